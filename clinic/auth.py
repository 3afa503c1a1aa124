"""Local accounts: argon2id password hashes (argon2-cffi) and login throttling.

Passwords are hashed with argon2-cffi's :class:`~argon2.PasswordHasher`
(argon2id, its default parameters) and never stored or logged in clear. A
failed login is slow for everyone and, after :data:`MAX_FAILURES` failures
within :data:`WINDOW_S` seconds for the same account or from the same address,
further attempts are refused until the window has passed.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable

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


class LoginThrottle:
    """Counts failed logins per key (account, address) in a sliding window.

    Args:
        max_failures: failures allowed within the window.
        window_s: the window, seconds.
        clock: monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = int(max_failures)
        self.window_s = float(window_s)
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again; 0 when none is blocked."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, self.window_s - (now - times[0]))
        return wait

    def failed(self, *keys: str) -> None:
        """Record one failed attempt for each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys`` after a successful login."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
