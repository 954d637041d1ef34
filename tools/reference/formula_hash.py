"""The hash behind every formula-weights fixture: FNV-1a 64 of a tensor's name, splitmix64 of
(hash + element index). src/util.rs computes the same (fnv1a64, splitmix64)."""
import numpy as np

MASK64 = (1 << 64) - 1


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001B3) & MASK64
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    # numpy uint64 array arithmetic wraps modulo 2^64
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
