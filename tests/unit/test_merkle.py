"""RFC 6962 Merkle tree: published test vectors, every proof of the 8-leaf tree, tampering, crash repair.

The vectors are those of github.com/transparency-dev/merkle (testonly/constants.go, testonly/reference_test.go,
proof/verify_test.go), which carry over the Certificate Transparency reference implementation's tests.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    MerkleStore,
    compute_root,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]

ROOTS = {size: bytes.fromhex(h) for size, h in {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}.items()}

# testonly.NodeHashes(): every complete subtree of the 8-leaf tree, by level.
NODE_HASHES = [[bytes.fromhex(h) for h in level] for level in (
    ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"],
    ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"],
    ["d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
)]


def _hashes(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (index, size) -> proof, 0-based index. From reference_test.go TestRefInclusionProof and verify_test.go
# inclusionProofs (which numbers leaves from 1).
PUBLISHED_INCLUSION = {
    (0, 1): [],
    (0, 2): _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
    (1, 2): _hashes("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    (2, 3): _hashes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    (1, 5): _hashes("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    (0, 8): _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    (5, 8): _hashes("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
}

# (first, second) -> proof. From reference_test.go TestRefConsistencyProof and verify_test.go consistencyProofs.
PUBLISHED_CONSISTENCY = {
    (1, 1): [],
    (1, 8): _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    (6, 8): _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    (2, 5): _hashes("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    (6, 7): _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
}

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# -- reference proofs, straight from the recursive definitions of RFC 6962 §2.1.1 and §2.1.2 ---------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, entries: list[bytes]) -> list[bytes]:
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, entries[:k]) + [compute_root(entries[k:])]
    return ref_path(m - k, entries[k:]) + [compute_root(entries[:k])]


def ref_subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [compute_root(entries)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, entries[:k], b) + [compute_root(entries[k:])]
    return ref_subproof(m - k, entries[k:], False) + [compute_root(entries[:k])]


def ref_proof(m: int, entries: list[bytes]) -> list[bytes]:
    return ref_subproof(m, entries, True)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> MerkleStore:
    s = MerkleStore(tmp_path / "tree")
    s.append(leaf_hash(x) for x in LEAVES)
    s.flush()
    yield s
    s.close()


def _build(directory: Path, leaves: list[bytes]) -> MerkleStore:
    s = MerkleStore(directory)
    s.append(leaf_hash(x) for x in leaves)
    s.flush()
    return s


def _level_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("level-*.bin"))}


# -- hashing and roots ----------------------------------------------------------------------------


def test_hashes_follow_rfc6962_domain_separation() -> None:
    assert EMPTY_ROOT == ROOTS[0]
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(NODE_HASHES[0][0], NODE_HASHES[0][1]) == NODE_HASHES[1][0]
    assert leaf_hash(b"\x10") == hashlib.sha256(b"\x00\x10").digest() == NODE_HASHES[0][2]


@pytest.mark.parametrize("size", range(9))
def test_reference_root_matches_published_roots(size: int) -> None:
    assert compute_root(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_store_root_matches_published_roots(store: MerkleStore, size: int) -> None:
    assert store.root(size) == ROOTS[size]


def test_level_files_hold_exactly_the_published_node_hashes(store: MerkleStore, tmp_path: Path) -> None:
    files = _level_files(tmp_path / "tree")
    assert files == {f"level-{level:02d}.bin": b"".join(nodes) for level, nodes in enumerate(NODE_HASHES)}
    assert store.size == store.flushed_size == 8


def test_subtree_hash_of_any_range(store: MerkleStore) -> None:
    for start in range(8):
        for end in range(start + 1, 9):
            assert store.subtree_hash(start, end) == compute_root(LEAVES[start:end]), (start, end)
    with pytest.raises(ValueError):
        store.subtree_hash(3, 3)
    with pytest.raises(ValueError):
        store.subtree_hash(0, 9)


# -- inclusion ------------------------------------------------------------------------------------


ALL_INCLUSION = [(i, n) for n in range(1, 9) for i in range(n)]


@pytest.mark.parametrize("index,size", ALL_INCLUSION)
def test_inclusion_proof_for_every_leaf_and_size(store: MerkleStore, index: int, size: int) -> None:
    proof = store.inclusion_proof(index, size)
    assert proof == ref_path(index, LEAVES[:size])
    if (index, size) in PUBLISHED_INCLUSION:
        assert proof == PUBLISHED_INCLUSION[(index, size)]
    assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])
    assert root_from_inclusion(leaf_hash(LEAVES[index]), index, size, proof) == ROOTS[size]


def test_every_published_inclusion_vector_is_checked() -> None:
    assert set(PUBLISHED_INCLUSION) <= set(ALL_INCLUSION)


def _inclusion_tampering(index: int, size: int, proof: list[bytes], leaf: bytes, root: bytes):
    """Go's corruptInclusionProof probes, plus every single drop and pairwise swap."""
    yield "index - 1", (leaf, index - 1, size, proof, root)
    yield "index + 1", (leaf, index + 1, size, proof, root)
    yield "index ^ 2", (leaf, index ^ 2, size, proof, root)
    yield "size * 2", (leaf, index, size * 2, proof, root)
    yield "size // 2", (leaf, index, size // 2, proof, root)
    yield "wrong leaf", (leaf_hash(b"WrongLeaf"), index, size, proof, root)
    yield "empty root", (leaf, index, size, proof, EMPTY_ROOT)
    yield "random root", (leaf, index, size, proof, SOME_HASH)
    yield "trailing hash", (leaf, index, size, proof + [SOME_HASH], root)
    yield "trailing root", (leaf, index, size, proof + [root], root)
    yield "trailing garbage", (leaf, index, size, proof + [b""], root)
    yield "preceding root", (leaf, index, size, [root] + proof, root)
    yield "preceding hash", (leaf, index, size, [SOME_HASH] + proof, root)
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        yield f"flipped proof[{i}]", (leaf, index, size, flipped, root)
        yield f"dropped proof[{i}]", (leaf, index, size, proof[:i] + proof[i + 1:], root)
        yield f"inserted before proof[{i}]", (leaf, index, size, proof[:i] + [SOME_HASH] + proof[i:], root)
        for j in range(i + 1, len(proof)):
            if proof[i] != proof[j]:
                swapped = list(proof)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                yield f"swapped proof[{i}] and proof[{j}]", (leaf, index, size, swapped, root)


@pytest.mark.parametrize("index,size", ALL_INCLUSION)
def test_tampered_inclusion_proofs_fail(store: MerkleStore, index: int, size: int) -> None:
    proof = store.inclusion_proof(index, size)
    leaf = leaf_hash(LEAVES[index])
    accepted = [desc for desc, args in _inclusion_tampering(index, size, proof, leaf, ROOTS[size])
                if verify_inclusion(*args)]
    assert accepted == []


def test_every_other_leaf_fails_with_a_proof(store: MerkleStore) -> None:
    for size in range(1, 9):
        for index in range(size):
            proof = store.inclusion_proof(index, size)
            for other in range(8):
                if other != index:
                    assert not verify_inclusion(leaf_hash(LEAVES[other]), index, size, proof, ROOTS[size])


@pytest.mark.parametrize("args", [
    (None, 0, 1, [], ROOTS[1]),
    (ROOTS[1], 0, 1, [], None),
    (ROOTS[1][:31], 0, 1, [], ROOTS[1][:31]),
    (b"", 0, 1, [], b""),
    (ROOTS[1], 0, 1, None, ROOTS[1]),
    (ROOTS[1], 0, 1, "not a list", ROOTS[1]),
    (ROOTS[1], 0, 1, b"\x00" * 32, ROOTS[1]),
    (ROOTS[1], 0, 2, [42], ROOTS[2]),
    (ROOTS[1], 0, 2, [None], ROOTS[2]),
    (ROOTS[1], 0, 2, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"], ROOTS[2]),
    (ROOTS[1], "0", 1, [], ROOTS[1]),
    (ROOTS[1], 0, "1", [], ROOTS[1]),
    (ROOTS[1], 0.0, 1, [], ROOTS[1]),
    (ROOTS[1], False, True, [], ROOTS[1]),
    (ROOTS[1], -1, 1, [], ROOTS[1]),
    (ROOTS[1], 0, 0, [], ROOTS[1]),
    (ROOTS[1], 1, 1, [], ROOTS[1]),
    (ROOTS[1], 0, 2 ** 70, [ROOTS[1]] * 70, ROOTS[1]),
])
def test_verify_inclusion_never_raises_on_malformed_input(args: tuple) -> None:
    assert verify_inclusion(*args) is False


def test_single_entry_proof() -> None:
    h = leaf_hash(b"data")
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_inclusion(h, 0, 1, [], EMPTY_ROOT)
    assert not verify_inclusion(EMPTY_ROOT, 0, 1, [], h)


def test_inclusion_proof_rejects_bad_arguments(store: MerkleStore) -> None:
    with pytest.raises(ValueError, match="not in a tree of size"):
        store.inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="not in a tree of size"):
        store.inclusion_proof(0, 0)
    with pytest.raises(ValueError, match="out of range"):
        store.inclusion_proof(0, 9)
    with pytest.raises(ValueError):
        store.inclusion_proof(-1, 4)
    with pytest.raises(TypeError):
        store.inclusion_proof(0.5, 4)  # type: ignore[arg-type]


# -- consistency ----------------------------------------------------------------------------------


ALL_CONSISTENCY = [(m, n) for n in range(1, 9) for m in range(1, n + 1)]


@pytest.mark.parametrize("first,second", ALL_CONSISTENCY)
def test_consistency_proof_for_every_pair(store: MerkleStore, first: int, second: int) -> None:
    proof = store.consistency_proof(first, second)
    assert proof == ref_proof(first, LEAVES[:second])
    if (first, second) in PUBLISHED_CONSISTENCY:
        assert proof == PUBLISHED_CONSISTENCY[(first, second)]
    assert (proof == []) == (first == second)
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def test_every_published_consistency_vector_is_checked() -> None:
    assert set(PUBLISHED_CONSISTENCY) <= set(ALL_CONSISTENCY)


def _consistency_tampering(m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]):
    """Go's corruptConsistencyProof probes, plus every single drop, insertion and pairwise swap."""
    yield "first - 1", (m - 1, n, r1, r2, proof)
    yield "first + 1", (m + 1, n, r1, r2, proof)
    yield "first ^ 2", (m ^ 2, n, r1, r2, proof)
    yield "second * 2", (m, n * 2, r1, r2, proof)
    yield "second // 2", (m, n // 2, r1, r2, proof)
    yield "wrong first root", (m, n, SOME_HASH, r2, proof)
    yield "wrong second root", (m, n, r1, SOME_HASH, proof)
    yield "swapped roots", (m, n, r2, r1, proof)
    yield "empty proof", (m, n, r1, r2, [])
    yield "trailing garbage", (m, n, r1, r2, proof + [b""])
    yield "trailing hash", (m, n, r1, r2, proof + [SOME_HASH])
    yield "trailing first root", (m, n, r1, r2, proof + [r1])
    yield "trailing second root", (m, n, r1, r2, proof + [r2])
    yield "preceding garbage", (m, n, r1, r2, [b""] + proof)
    yield "preceding first root", (m, n, r1, r2, [r1] + proof)
    yield "preceding second root", (m, n, r1, r2, [r2] + proof)
    yield "preceding proof[0]", (m, n, r1, r2, [proof[0]] + proof)
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        yield f"flipped proof[{i}]", (m, n, r1, r2, flipped)
        yield f"dropped proof[{i}]", (m, n, r1, r2, proof[:i] + proof[i + 1:])
        yield f"inserted before proof[{i}]", (m, n, r1, r2, proof[:i] + [SOME_HASH] + proof[i:])
        for j in range(i + 1, len(proof)):
            if proof[i] != proof[j]:
                swapped = list(proof)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                yield f"swapped proof[{i}] and proof[{j}]", (m, n, r1, r2, swapped)


@pytest.mark.parametrize("first,second", [(m, n) for m, n in ALL_CONSISTENCY if m < n])
def test_tampered_consistency_proofs_fail(store: MerkleStore, first: int, second: int) -> None:
    proof = store.consistency_proof(first, second)
    accepted = [desc for desc, args in
                _consistency_tampering(first, second, ROOTS[first], ROOTS[second], proof)
                if verify_consistency(*args)]
    assert accepted == []


def test_proof_for_another_pair_of_sizes_fails(store: MerkleStore) -> None:
    for m, n in ALL_CONSISTENCY:
        proof = store.consistency_proof(m, n)
        for m2, n2 in ALL_CONSISTENCY:
            if (m2, n2) != (m, n) and proof != store.consistency_proof(m2, n2):
                assert not verify_consistency(m2, n2, ROOTS[m2], ROOTS[n2], proof), (m, n, m2, n2)


def test_consistency_edge_cases() -> None:
    assert verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[3], [ROOTS[3]])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, SOME_HASH, ROOTS[5], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[5]])
    assert not verify_consistency(5, 3, ROOTS[5], ROOTS[3], [])
    assert not verify_consistency(1, 2, ROOTS[1], ROOTS[2], [])


@pytest.mark.parametrize("args", [
    (2, 5, ROOTS[2], ROOTS[5], None),
    (2, 5, ROOTS[2], ROOTS[5], "proof"),
    (2, 5, ROOTS[2], ROOTS[5], [1, 2]),
    (2, 5, ROOTS[2], ROOTS[5], [h.hex() for h in PUBLISHED_CONSISTENCY[(2, 5)]]),
    (2, 5, ROOTS[2], ROOTS[5], [h[:31] for h in PUBLISHED_CONSISTENCY[(2, 5)]]),
    (2, 5, None, ROOTS[5], PUBLISHED_CONSISTENCY[(2, 5)]),
    (2, 5, ROOTS[2], b"WrongRoot", PUBLISHED_CONSISTENCY[(2, 5)]),
    ("2", 5, ROOTS[2], ROOTS[5], PUBLISHED_CONSISTENCY[(2, 5)]),
    (2, 5.0, ROOTS[2], ROOTS[5], PUBLISHED_CONSISTENCY[(2, 5)]),
    (-2, 5, ROOTS[2], ROOTS[5], PUBLISHED_CONSISTENCY[(2, 5)]),
    (True, 5, ROOTS[1], ROOTS[5], PUBLISHED_CONSISTENCY[(2, 5)]),
    (2, 2 ** 80, ROOTS[2], ROOTS[5], [SOME_HASH] * 90),
])
def test_verify_consistency_never_raises_on_malformed_input(args: tuple) -> None:
    assert verify_consistency(*args) is False


def test_consistency_proof_rejects_bad_arguments(store: MerkleStore) -> None:
    assert store.consistency_proof(8, 8) == []
    with pytest.raises(ValueError, match="0 < first <= second"):
        store.consistency_proof(0, 5)
    with pytest.raises(ValueError, match="0 < first <= second"):
        store.consistency_proof(6, 5)
    with pytest.raises(ValueError, match="out of range"):
        store.consistency_proof(1, 9)


# -- the store against the reference, at random sizes and batchings ----------------------------------


def test_store_matches_reference_for_sizes_up_to_300(tmp_path: Path) -> None:
    rng = random.Random(6962)
    leaves = [rng.randbytes(rng.randrange(0, 40)) for _ in range(300)]
    s = MerkleStore(tmp_path / "tree")
    done = 0
    while done < len(leaves):
        batch = rng.choice([1, 1, 2, 3, 7, 16, 33])
        s.append(leaf_hash(x) for x in leaves[done:done + batch])
        done = min(done + batch, len(leaves))
        if rng.random() < 0.5:
            s.flush(fsync=False)
    s.flush()
    for n in range(0, 301):
        assert s.root(n) == compute_root(leaves[:n]), n
    for n in list(range(1, 40)) + rng.sample(range(40, 301), 25):
        for i in rng.sample(range(n), min(n, 6)):
            proof = s.inclusion_proof(i, n)
            assert proof == ref_path(i, leaves[:n]), (i, n)
            assert verify_inclusion(leaf_hash(leaves[i]), i, n, proof, s.root(n))
        for m in rng.sample(range(1, n + 1), min(n, 6)):
            proof = s.consistency_proof(m, n)
            assert proof == ref_proof(m, leaves[:n]), (m, n)
            assert verify_consistency(m, n, s.root(m), s.root(n), proof)
    for level, path in enumerate(sorted((tmp_path / "tree").glob("level-*.bin"))):
        assert path.stat().st_size == (300 >> level) * 32
    s.close()


def test_unflushed_leaves_are_readable_but_not_on_disk(tmp_path: Path) -> None:
    s = _build(tmp_path / "tree", LEAVES[:5])
    s.append(leaf_hash(x) for x in LEAVES[5:])
    assert (s.size, s.flushed_size) == (8, 5)
    assert s.root(8) == ROOTS[8]
    assert s.inclusion_proof(6, 8) == ref_path(6, LEAVES)
    reader = MerkleStore.open_read_only(tmp_path / "tree")
    assert reader.size == 5
    s.flush()
    assert reader.size == 8 and reader.root(8) == ROOTS[8]
    reader.close()
    s.close()


def test_append_rejects_bad_leaf_hashes_without_changing_anything(tmp_path: Path) -> None:
    s = _build(tmp_path / "tree", LEAVES[:3])
    with pytest.raises(ValueError):
        s.append([leaf_hash(b"ok"), b"short"])
    assert s.size == 3 and s.root(3) == ROOTS[3]
    s.close()


# -- reopen, truncate, crash repair ---------------------------------------------------------------


def test_reopen_and_keep_appending(tmp_path: Path) -> None:
    _build(tmp_path / "tree", LEAVES[:3]).close()
    s = MerkleStore(tmp_path / "tree")
    assert s.size == 3 and s.root(3) == ROOTS[3]
    s.append(leaf_hash(x) for x in LEAVES[3:])
    s.flush()
    assert [s.root(n) for n in range(9)] == [ROOTS[n] for n in range(9)]
    assert _level_files(tmp_path / "tree") == {f"level-{lvl:02d}.bin": b"".join(nodes)
                                                for lvl, nodes in enumerate(NODE_HASHES)}
    s.close()


@pytest.mark.parametrize("size", range(9))
def test_truncate_then_append_other_leaves(tmp_path: Path, size: int) -> None:
    s = _build(tmp_path / "tree", LEAVES)
    s.truncate(size)
    assert s.size == size and s.root(size) == ROOTS[size]
    for level, path in enumerate(sorted((tmp_path / "tree").glob("level-*.bin"))):
        assert path.stat().st_size == (size >> level) * 32
    other = LEAVES[:size] + [b"other %d" % i for i in range(size, 11)]
    s.append(leaf_hash(x) for x in other[size:])
    s.flush()
    for n in range(12):
        assert s.root(n) == compute_root(other[:n])
    s.close()
    reopened = MerkleStore(tmp_path / "tree")
    assert reopened.size == 11 and reopened.root(11) == compute_root(other)
    reopened.close()


def test_truncate_drops_buffered_leaves_too(tmp_path: Path) -> None:
    s = _build(tmp_path / "tree", LEAVES[:4])
    s.append(leaf_hash(x) for x in LEAVES[4:])
    s.truncate(6)
    assert (s.size, s.flushed_size) == (6, 4)
    s.flush()
    assert s.root(6) == ROOTS[6]
    with pytest.raises(ValueError):
        s.truncate(7)
    s.close()


def _fresh_files(tmp_path: Path, leaves: list[bytes]) -> dict[str, bytes]:
    _build(tmp_path / "fresh", leaves).close()
    return _level_files(tmp_path / "fresh")


def test_crash_repair_of_partial_records_and_levels_out_of_step(tmp_path: Path) -> None:
    rng = random.Random(1)
    leaves = [rng.randbytes(8) for _ in range(45)]
    tree = tmp_path / "tree"
    _build(tree, leaves).close()
    expected = _fresh_files(tmp_path, leaves)
    with open(tree / "level-00.bin", "ab") as f:
        f.write(b"\x01" * 13)
    with open(tree / "level-02.bin", "ab") as f:
        f.write(b"\x02" * 31)
    with open(tree / "level-01.bin", "ab") as f:
        f.write(SOME_HASH * 3)
    os.truncate(tree / "level-03.bin", 32)
    os.remove(tree / "level-04.bin")
    (tree / "level-07.bin").write_bytes(SOME_HASH * 2)
    s = MerkleStore(tree)
    assert s.size == 45
    assert _level_files(tree) == {**expected, "level-07.bin": b""}
    assert [s.root(n) for n in range(46)] == [compute_root(leaves[:n]) for n in range(46)]
    s.close()


def test_crash_repair_when_the_upper_levels_are_ahead_of_level_0(tmp_path: Path) -> None:
    leaves = [b"%d" % i for i in range(20)]
    tree = tmp_path / "tree"
    _build(tree, leaves).close()
    os.truncate(tree / "level-00.bin", 13 * 32 + 7)
    s = MerkleStore(tree)
    assert s.size == 13
    assert _level_files(tree) == {**_fresh_files(tmp_path, leaves[:13]), "level-04.bin": b""}
    assert s.root(13) == compute_root(leaves[:13])
    s.close()


def test_read_only_store_never_creates_or_repairs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        MerkleStore.open_read_only(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()
    tree = tmp_path / "tree"
    _build(tree, LEAVES).close()
    with open(tree / "level-00.bin", "ab") as f:
        f.write(b"\xff" * 5)
    before = _level_files(tree)
    reader = MerkleStore.open_read_only(tree)
    assert reader.size == 8 and reader.root(8) == ROOTS[8]
    assert reader.inclusion_proof(5, 8) == PUBLISHED_INCLUSION[(5, 8)]
    with pytest.raises(PermissionError):
        reader.append([SOME_HASH])
    with pytest.raises(PermissionError):
        reader.truncate(3)
    reader.close()
    assert _level_files(tree) == before
    (tmp_path / "empty").mkdir()
    empty = MerkleStore.open_read_only(tmp_path / "empty")
    assert empty.size == 0 and empty.root(0) == EMPTY_ROOT
    assert list((tmp_path / "empty").iterdir()) == []


WRITER = textwrap.dedent("""
    import random, sys, time
    from pathlib import Path
    from audit.merkle import MerkleStore, leaf_hash
    rng = random.Random(7)
    store = MerkleStore(Path(sys.argv[1]))
    done, total = 0, int(sys.argv[2])
    while done < total:
        n = min(rng.randrange(1, 200), total - done)
        store.append(leaf_hash(i.to_bytes(4, "big")) for i in range(done, done + n))
        store.flush(fsync=False)
        done += n
        time.sleep(0.001)
    store.close()
""")


def test_reader_in_another_process_sees_only_consistent_trees(tmp_path: Path) -> None:
    total = 20000
    reference = _build(tmp_path / "reference", [i.to_bytes(4, "big") for i in range(total)])
    tree = tmp_path / "tree"
    MerkleStore(tree).close()
    reader = MerkleStore.open_read_only(tree)
    root_dir = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tree), str(total)], cwd=root_dir,
                              env={**os.environ, "PYTHONPATH": str(root_dir)})
    seen = set()
    try:
        while writer.poll() is None:
            n = reader.size
            if n == 0 or n in seen:
                continue
            seen.add(n)
            assert reader.root(n) == reference.root(n)
            i = n // 3
            proof = reader.inclusion_proof(i, n)
            assert verify_inclusion(reference.leaf(i), i, n, proof, reference.root(n))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert reader.size == total and reader.root(total) == reference.root(total)
    assert len(seen) > 1, f"the reader only ever saw sizes {sorted(seen)}: no concurrency was tested"
    reader.close()
    reference.close()
