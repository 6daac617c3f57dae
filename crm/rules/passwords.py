"""What a password a person chooses must be (issue #30, ASVS L2): at least 12 characters, and not
one an attacker tries early: not among the common passwords, not the login or the name, not a
keyboard walk, a repeat, a sequence or a date (zxcvbn's estimate of the guesses it takes, from
PyPI, pinned). Pure: the password and who it is for in, the refusal in Russian out."""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH, MAX_LENGTH = 12, 200
MIN_SCORE = 3  # zxcvbn: about 10^8 guesses and more, out of reach of a throttled online attack


def password_problem(password: str, login: str = "", full_name: str = "") -> str:
    """Why ``password`` is refused ("" : it is good enough)."""
    if len(password) < MIN_LENGTH:
        return f"Пароль короче {MIN_LENGTH} символов"
    if len(password) > MAX_LENGTH:
        return f"Пароль длиннее {MAX_LENGTH} символов"
    lowered = password.lower()
    if login and login.lower() in lowered:
        return "Пароль не должен содержать логин"
    result = zxcvbn(password[:100], user_inputs=[x for x in (login, *full_name.split()) if x])
    if result["score"] < MIN_SCORE:
        return "Пароль из частых или легко подбираемых (слова, ряды клавиш, повторы, даты): придумайте другой"
    return ""
