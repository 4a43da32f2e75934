"""rebuffer: blocks of one to two block sizes, every byte in order, copied only where needed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence

import pytest

from glimpse.streaming import rebuffer

BLOCK = 1000


async def _from(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _blocks(chunks: Sequence[bytes]) -> list[bytes]:
    async def run() -> list[bytes]:
        return [block async for block in rebuffer(_from(chunks), BLOCK)]

    return asyncio.run(run())


@pytest.mark.parametrize("seed", range(5))
def test_blocks_hold_every_byte_in_order_and_only_the_last_is_short(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [rng.randbytes(rng.choice((0, 1, 99, 400, 999, 1000, 1001, 5000))) for _ in range(200)]
    blocks = _blocks(chunks)
    assert b"".join(blocks) == b"".join(chunks)
    assert all(BLOCK <= len(block) < 2 * BLOCK for block in blocks[:-1])
    assert 0 < len(blocks[-1]) < 2 * BLOCK


def test_a_chunk_of_one_to_two_blocks_passes_on_uncopied() -> None:
    big, bigger = b"a" * BLOCK, b"b" * (2 * BLOCK - 1)
    blocks = _blocks([big, bigger, b"c" * 10])
    assert blocks[0] is big
    assert blocks[1] is bigger
    assert blocks[2] == b"c" * 10


def test_a_larger_chunk_is_cut_into_blocks_under_two_block_sizes() -> None:
    huge = bytes(range(256)) * 18  # 4.6 blocks
    blocks = _blocks([b"x" * 10, huge])
    assert [len(b) for b in blocks] == [BLOCK, BLOCK, BLOCK, len(huge) + 10 - 3 * BLOCK]
    assert b"".join(blocks) == b"x" * 10 + huge


def test_small_chunks_are_joined_up_to_the_boundary_they_cross() -> None:
    assert _blocks([b"x" * 600, b"y" * 600, b"z" * 600]) == [b"x" * 600 + b"y" * 600, b"z" * 600]
    assert _blocks([]) == []
    assert _blocks([b"", b"q", b""]) == [b"q"]
