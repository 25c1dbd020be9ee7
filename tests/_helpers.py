"Shared by the test files: where the reference data lie, and an error-message assertion."
from pathlib import Path
import pytest

DATA = Path(__file__).resolve().parents[2] / 'shared' / 'data'   # ../shared/data beside the checkout (CI lays it there)


def raises(fn, *fragments, exc=ValueError):
    "Call fn, expect `exc`, and check every fragment occurs in the message; return the message."
    with pytest.raises(exc) as info: fn()
    msg = str(info.value)
    for f in fragments: assert str(f) in msg, f'{f!r} not in: {msg}'
    return msg
