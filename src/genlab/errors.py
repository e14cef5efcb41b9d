"""The one exception type for mistakes a user can fix.

Every error a user can cause (bad names, bad paths, bad data, bad config values) is raised as
:class:`UserError`; the CLI prints it as ``error: <message>`` and exits with status 2. It is a
``ValueError`` so that Python callers can catch it the usual way.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem in the user's input, with a message that says what to fix."""
