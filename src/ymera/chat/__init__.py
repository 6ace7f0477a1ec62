"""Chat sessions between people and agents: REST, the WebSocket hub, agent replies."""
