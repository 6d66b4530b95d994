"""The chat panel for notebooks (ipywidgets): a session with the master and how its exchanges are shown."""

from lab.chat.panel import ChatPanel, QuestionRefused, QuestionView

__all__ = ["ChatPanel", "QuestionRefused", "QuestionView"]
