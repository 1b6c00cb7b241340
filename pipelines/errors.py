"""Errors the user can act on.

A `StudioError` carries a one-line message that says what to change. The UI shows it as a
`gr.Error`, the REST API as a 4xx response; anything else is a bug and is logged with its traceback.
"""


class StudioError(ValueError):
    """A problem with the user's input or environment, with a message that says what to change."""


class JobCancelled(Exception):
    """The job was stopped by the user before it finished."""
