"""Local accounts: argon2id password hashes (argon2-cffi) and login throttling.

Passwords are hashed with argon2-cffi's :class:`~argon2.PasswordHasher`
(argon2id, its default parameters) and never stored or logged in clear. A
failed login is slow for everyone and, after :data:`MAX_FAILURES` failures
within :data:`WINDOW_S` seconds for the same account, further attempts at that
account are refused until the window has passed. The failures are kept in the
clinic database, so they survive a restart.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

from clinic.store import ClinicStore
from device.errors import SkinScanError

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD_LENGTH = 10
MAX_FAILURES = 5
WINDOW_S = 15 * 60.0


class AccountError(SkinScanError, ValueError):
    """A username or password is not acceptable; the message says why."""


def _hasher():  # -> argon2.PasswordHasher
    from argon2 import PasswordHasher

    return PasswordHasher()


def check_username(username: str) -> str:
    """Return ``username`` if acceptable (2-32 of a-z 0-9 . _ -, starting alphanumeric)."""
    if not USERNAME_RE.fullmatch(username or ""):
        raise AccountError(
            "a username has 2 to 32 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    return username


def hash_password(password: str) -> str:
    """Hash a new password with argon2id.

    Raises:
        AccountError: it is shorter than :data:`MIN_PASSWORD_LENGTH` characters.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher().hash(password)


def add_user(store: ClinicStore, username: str, password: str) -> None:
    """Create a local account.

    Raises:
        AccountError: bad username or password.
        StorageError: the username exists already.
    """
    store.add_user(check_username(username), hash_password(password))


# A hash to verify against for unknown users, so their failures take as long as others'.
_DUMMY: list[str] = []


def verify_login(store: ClinicStore, username: str, password: str) -> bool:
    """Whether ``password`` is ``username``'s; rehashes when argon2's parameters changed."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    hasher = _hasher()
    stored = store.password_hash(username)
    if stored is None:
        if not _DUMMY:
            _DUMMY.append(hasher.hash("not a password of anyone"))
        stored, known = _DUMMY[0], False
    else:
        known = True
    try:
        hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if not known:
        return False
    if hasher.check_needs_rehash(stored):
        store.set_password_hash(username, hasher.hash(password))
    return True


class FailureLog(Protocol):
    """Where failed logins are kept: :class:`~clinic.store.ClinicStore` in the app."""

    def add_login_failure(self, account: str, at: float, address: str | None) -> None:
        """Record one failed login of ``account`` at time ``at``."""

    def login_failures(self, account: str, since: float) -> list[float]:
        """The times of ``account``'s failed logins at or after ``since``, oldest first."""

    def clear_login_failures(self, account: str) -> int:
        """Forget ``account``'s failures; how many."""

    def prune_login_failures(self, before: float) -> int:
        """Forget every account's failures older than ``before``; how many."""


class LoginThrottle:
    """Locks an account after :data:`MAX_FAILURES` failed logins within :data:`WINDOW_S`.

    Failures count per account (the username typed, known or not), never per
    address: behind a reverse proxy on the same machine every user arrives from
    one address, and one user's typos must not lock out the others. The app binds
    the throttle to the clinic database (:meth:`using`), so a restart does not
    reset the failures.

    Args:
        max_failures: failures allowed within the window.
        window_s: the window, seconds.
        clock: wall clock in seconds (tests pass a fake one); wall time, because
            the failures outlive the process.
        log: where the failures are kept; None: only the limits, bound later with
            :meth:`using` (as :class:`~clinic.context.ClinicSettings` holds it).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.time,
        log: FailureLog | None = None,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("the lock-out needs max_failures >= 1 and window_s > 0")
        self.max_failures = int(max_failures)
        self.window_s = float(window_s)
        self.clock = clock
        self._log = log

    def using(self, log: FailureLog) -> LoginThrottle:
        """The same limits, with the failures kept in ``log``."""
        return LoginThrottle(self.max_failures, self.window_s, self.clock, log)

    @property
    def log(self) -> FailureLog:
        """Where the failures are kept."""
        if self._log is None:
            raise RuntimeError("the login throttle is not bound to a store: call using(store)")
        return self._log

    def retry_after(self, account: str) -> float:
        """Seconds until ``account`` may try again; 0 when it is not locked."""
        now = self.clock()
        times = self.log.login_failures(account, now - self.window_s)
        if len(times) < self.max_failures:
            return 0.0
        # Locked until the oldest failure that still counts leaves the window.
        return max(0.0, times[-self.max_failures] + self.window_s - now)

    def failed(self, account: str, address: str | None = None) -> None:
        """Record one failed login of ``account`` (from ``address``, kept for the admin)."""
        now = self.clock()
        self.log.prune_login_failures(now - self.window_s)  # the table stays small
        self.log.add_login_failure(account, now, address)

    def succeeded(self, account: str) -> None:
        """Forget ``account``'s failures after a successful login."""
        self.log.clear_login_failures(account)
