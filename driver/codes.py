"""Code tables (``data/codes/*.yaml``): numbers to names, never dropped when unknown."""

from __future__ import annotations

import functools

import yaml

from .profile import DATA


@functools.cache
def _load(name: str) -> dict:
    return yaml.safe_load((DATA / "codes" / f"{name}.yaml").read_text())


def _table(name: str, section: str | None = None) -> dict[int, str]:
    doc = _load(name)
    if section is not None:
        doc = doc[section]
    # YAML reads 0x0208 as the integer 520 already; plain keys are decimal.
    return {int(k): str(v) for k, v in doc.items()}


def virtio_gpu(section: str, value: int) -> str:
    """``("commands", 0x208)`` → ``RESOURCE_MAP_BLOB``; unknown values say so, with the number."""
    return _table("virtio_gpu", section).get(value, f"unknown {section[:-1]} 0x{value:x}")


def vk_result_name(value: int) -> str:
    """``-1`` → ``VK_ERROR_OUT_OF_HOST_MEMORY``; an unknown value is still shown."""
    return _table("vkresult").get(value, f"VkResult({value}, unknown)")


def venus_messages() -> dict[str, str]:
    """Mesa Venus / virtio-gpu guest messages (regex) → what they mean."""
    return {str(k): " ".join(str(v).split()) for k, v in _load("venus_messages").items()}
