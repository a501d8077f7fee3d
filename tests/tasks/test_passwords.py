"""Log-ins hash passwords on a thread of lower CPU priority, with Django's PBKDF2 unchanged:
the same stored hashes, the same cost."""

import os
import threading

from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, make_password

from tasks.passwords import LowPriorityPBKDF2PasswordHasher, _hashing_thread


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_hash_is_djangos_pbkdf2_at_its_full_cost():
    ours, djangos = LowPriorityPBKDF2PasswordHasher(), PBKDF2PasswordHasher()
    assert ours.algorithm == djangos.algorithm == "pbkdf2_sha256"
    assert ours.iterations == djangos.iterations >= 1_000_000
    assert ours.encode("correct horse", "salt1234") == djangos.encode("correct horse", "salt1234")


def test_hashes_made_before_verify_and_new_ones_are_made_by_it():
    before = PBKDF2PasswordHasher().encode("battery staple", PBKDF2PasswordHasher().salt())
    assert check_password("battery staple", before)
    assert not check_password("battery stapler", before)
    made = make_password("battery staple")
    assert made.startswith("pbkdf2_sha256$") and check_password("battery staple", made)


def test_hashing_runs_at_the_lower_priority_and_the_request_thread_keeps_its_own(settings):
    assert settings.CHOSEN_PASSWORD_HASH_NICE == 10
    mine = nice_of_this_thread()
    assert _hashing_thread().submit(nice_of_this_thread).result() == 10
    assert nice_of_this_thread() == mine
