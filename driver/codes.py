"""Code tables (``data/codes/*.yaml``): numbers to names, never dropped when unknown."""

from __future__ import annotations

import functools

import yaml

from .profile import DATA


@functools.cache
def _table(name: str) -> dict[int, str]:
    doc = yaml.safe_load((DATA / "codes" / f"{name}.yaml").read_text())
    return {int(k): str(v) for k, v in doc.items()}


def vk_result_name(value: int) -> str:
    """``-1`` → ``VK_ERROR_OUT_OF_HOST_MEMORY``; an unknown value is still shown."""
    return _table("vkresult").get(value, f"VkResult({value}, unknown)")
