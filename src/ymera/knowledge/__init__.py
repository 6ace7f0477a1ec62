"""The knowledge base: experiences from finished tasks and from people and
agents, searched by text (and by meaning with the ``semantic`` extra)."""
