"""What a record's ``peak_mem_gb`` measures (its ``memory_kind``), and below which CPU
reading a number says more about the allocator than about the method."""

from __future__ import annotations

# What a record's ``peak_mem_gb`` measures (its ``memory_kind``).
CUDA_MEMORY = "cuda_max_allocated"  # the allocator's peak within the step
CPU_MEMORY = "cpu_peak_rss_growth"  # growth of peak RSS over the step's starting RSS

# Below this growth of peak RSS within a step (GB, as ``peak_mem_gb``: GiB), a CPU number
# says more about the allocator than about the method, so ratios of it are not computed.
# glibc's malloc serves requests below its dynamic mmap threshold (up to 32 MiB) from
# heap it keeps resident, and keeps freed heap up to its trim threshold (twice that) without
# returning it: whether a step shows tens of MiB of growth depends on what earlier steps
# left resident. 0.05 GB (about 51 MiB) is that scale; an empty step stays under it
# (tests/test_efficiency.py), while a step's real working set (a 256 MiB block there) is
# well above it. On CUDA the allocator's peak counts every tensor exactly: no floor.
CPU_RSS_NOISE_FLOOR_GB = 0.05


def memory_kind(stored: str | None, device: str | None) -> str | None:
    """The kind of a record's ``peak_mem_gb``: as stored, else from its device ("cpu": CPU
    RSS growth; a CUDA card's name: the allocator's peak); None when neither is stored."""
    if stored:
        return stored
    if not device:
        return None
    return CPU_MEMORY if device == "cpu" else CUDA_MEMORY
