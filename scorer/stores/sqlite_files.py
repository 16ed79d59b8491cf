"""What a SQLite database needs of its folder, said plainly when it is missing.

SQLite writes beside its database (a journal on every write, and the job keeps its run lock file there), so a
database in a folder this user cannot write fails however readable the file is: in the image (uid 10001) a
volume mounted as root's is the usual case. The store and `db migrate` turn the OS's and SQLite's wording
("Permission denied", "attempt to write a readonly database", "unable to open database file") into one error
that names the folder or file and the fix.

>>> err = not_writable("/data/leads.db", cause="Permission denied")
>>> "uid" in err.message and "writable volume" in err.hint
True
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from lead_errors import StoreError

__all__ = ["SQLITE_ACCESS_MESSAGES", "access_errno", "not_writable", "sqlite_refusal"]

#: SQLite's own words for a database it cannot write or create (sqlite3.OperationalError's message).
SQLITE_ACCESS_MESSAGES = ("attempt to write a readonly database", "unable to open database file")
_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def access_errno(exc: OSError) -> bool:
    """Whether ``exc`` is the OS refusing this user (permissions, or a read-only file system)."""
    return exc.errno in _ACCESS


def not_writable(path: str, *, cause: str) -> StoreError:
    """A `StoreError` for the SQLite database at ``path`` that this user cannot write; ``cause`` is what the
    OS or SQLite said. Names which of the folder or the file is the problem, as far as ``os.access`` tells."""
    db = Path(path).absolute()
    folder = db.parent
    uid = os.getuid()
    if not os.access(folder, os.W_OK | os.X_OK):
        what = f"its folder {folder} is not writable by this user (uid {uid})"
    elif db.exists() and not os.access(db, os.W_OK):
        what = f"the file is not writable by this user (uid {uid})"
    else:
        what = f"this user (uid {uid}) cannot write there"
    return StoreError(
        f"cannot write the SQLite database {db}: {what} ({cause})",
        hint=f"make the folder and the database file writable by uid {uid} (chown/chmod), or mount a writable "
        "volume there: SQLite writes a journal beside the database, and the job keeps its run lock file there",
    )


def sqlite_refusal(url: str, message: str) -> StoreError | None:
    """`not_writable` for a SQLite ``url`` whose driver ``message`` says it cannot write or open the file;
    None for anything else (another database, another error)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:":
        return None
    if not any(m in message for m in SQLITE_ACCESS_MESSAGES):
        return None
    return not_writable(path, cause=message)
