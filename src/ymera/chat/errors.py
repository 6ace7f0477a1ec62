"""Typed errors of the Chat API."""

from __future__ import annotations

from ymera.errors import Conflict, NotFound, Unprocessable


class SessionNotFound(NotFound):
    code = "chat_session_not_found"


class SessionArchived(Conflict):
    code = "chat_session_archived"


class NotAParticipant(NotFound):
    """Not one of the session's participants (answered as if it did not exist)."""

    code = "chat_session_not_found"


class UnknownParticipant(Unprocessable):
    code = "unknown_participant"


class UnknownAgent(Unprocessable):
    code = "unknown_agent"


class ParticipantNotFound(NotFound):
    code = "participant_not_found"
