"""Password verifiers as PostgreSQL stores them, computed and checked on the client side, so a
plaintext password never has to travel to the server (or its log) to be set or compared."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier (``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey``) PostgreSQL stores."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def md5_verifier(password: str, user: str) -> str:
    """The legacy ``md5…`` verifier: md5(password || user)."""
    return "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()  # noqa: S324 (PostgreSQL's format)


def password_matches(password: str, verifier: str | None, user: str | None = None) -> bool:
    """Whether ``password`` produces the stored ``verifier`` (SCRAM; md5 too when ``user`` is given).

    False when the verifier is missing or of an unknown kind."""
    verifier = verifier or ""
    match = re.match(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$", verifier)
    if match:
        expected = scram_verifier(password, base64.b64decode(match.group(2)), int(match.group(1)))
        return hmac.compare_digest(expected, verifier)
    if user is not None and verifier.startswith("md5"):
        return hmac.compare_digest(md5_verifier(password, user), verifier)
    return False
