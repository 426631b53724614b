"""Code tables (``data/codes/*.yaml``): numbers to names, never dropped when unknown."""

from __future__ import annotations

import errno
import functools
import os
import re
from typing import Callable

import yaml

from .profile import DATA


@functools.cache
def _load(name: str) -> dict:
    return yaml.safe_load((DATA / "codes" / f"{name}.yaml").read_text())


@functools.cache
def _table(name: str, section: str | None = None) -> dict[int, str]:
    """Value → name (cached: shared, never changed)."""
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


@functools.cache
def _by_name(name: str, section: str | None = None) -> dict[str, int]:
    """Name → value of a table (cached: shared, never changed)."""
    return {n: value for value, n in _table(name, section).items()}


# Every pattern here scans whole logs, so each is written to start with a literal: the regex
# engine then skips ahead to where that character occurs (and diagnosis looks for its literal
# words with str.find first). ``VkResult(?<=\bVkResult)`` is ``\bVkResult``: the lookbehind
# checks the word boundary once the word is found; a pattern that starts with ``\b`` is tried
# at every position of the text, 5 to 40 times slower over a long log.

# How people paste a VkResult: VK_ERROR_X (C), ERROR_X (vulkaninfo's string_VkResult),
# ErrorX / eErrorX / vk::Result::eErrorX (vulkan-hpp), and numbers after VkResult.
_VK_NAMED = re.compile(r"\b(?:VK_)?((?:ERROR|SUCCESS|NOT_READY|TIMEOUT|EVENT_SET|EVENT_RESET|INCOMPLETE|SUBOPTIMAL)[A-Z0-9_]*)\b")
_VK_CAMEL = re.compile(r"(?<![A-Za-z0-9])e?((?:Error|Suboptimal|Success|NotReady|Timeout|Incomplete)[A-Z][A-Za-z0-9]*|Success|Timeout|Incomplete)\b")
# Numbers in known contexts: "VkResult -3", our demos' "VK err -3 @", result JSON, and
# bindings that print the code after a Vulkan error text ("vulkan error: out of host memory (-1)").
_VK_NUMBER = re.compile(
    r"VkResult(?<=\bVkResult)\b[ :=(]{0,3}(-?\d+)\b|VK(?<=\bVK) err (-?\d+) @|\"vk_result\": (-?\d+)"
    r"|[Vv]ulkan(?<=\b[Vv]ulkan) error\b[^()\n]{0,60}\((-\d{1,10})\)|VkResult(?<=\bVkResult)\((-?\d+)"
)


def _vk_named(m: re.Match) -> tuple[int, str, str] | None:
    name = "VK_" + m.group(1)
    return (_by_name("vkresult")[name], name, m.group(0)) if name in _by_name("vkresult") else None


def _vk_camel(m: re.Match) -> tuple[int, str, str] | None:
    snake = "VK_" + re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(1)).upper()
    for candidate in (snake, snake + "_KHR", snake.replace("_K_H_R", "_KHR")):
        if candidate in _by_name("vkresult"):
            return (_by_name("vkresult")[candidate], candidate, m.group(0))
    return None


def _vk_number(m: re.Match) -> tuple[int, str, str] | None:
    value = int(next(g for g in m.groups() if g is not None))
    if value > 0 and value not in _table("vkresult"):
        return None
    return (value, vk_result_name(value), m.group(0))


def vk_results_in(text: str) -> list[tuple[int, str, str]]:
    """Every VkResult ``text`` names, however spelled: (value, canonical name, as written)."""
    return _found("vkresult", text)


_HV_VALUE = re.compile(
    r"(?:err(?<=\berr)(?:or)?|hv_return_t(?<=\bhv_return_t)|ret(?<=\bret)(?:urn(?:ed)?)?)\W{1,3}(-\d{6,10}|0x[fF][aA][eE]9400[0-9a-fA-F])\b"
    # a bare value where only an HV code can be: "(0xfae9400f, at …)", "Unable to create VM (-85377018)"
    r"|\((0x[fF][aA][eE]9400[0-9a-fA-F]|-8537\d{4})[,)]"
)
_HV_NAME = re.compile(r"HV_(?<=\bHV_)[A-Z_]+\b")
_ERRNO = re.compile(
    r"\((?:os error|Errno) (\d+)\)|\[Errno (\d+)\]|errno(?<=\berrno)[ =:]+(\d+)\b|error(?<=\berror) -(\d{1,3})\b"
    r"|failed(?<=\bfailed): -(\d{1,3})\b|rc -(?<=\brc -)(\d{1,3})\b|return(?<=\breturn)(?:ed)?=-(\d{1,3})\b"
    # rust-vmm's errno (vmm_sys_util::errno::Error, kvm-ioctls) as Debug prints it: libkrun's
    # "Error creating the Kvm object: Error(2)", crosvm's "RegisterMemory failed base: Error(13)"
    r"|Error(?<=\bError)\((\d{1,3})\)"
)


@functools.cache
def _errno_messages() -> re.Pattern:
    """strerror texts ("Permission denied", "No such file or directory") as one pattern."""
    texts = sorted({os.strerror(v) for v in errno.errorcode if not os.strerror(v).startswith("Unknown error")}, key=len, reverse=True)
    return re.compile(f"({_alternatives(texts)})\\b")


def _alternatives(words: list[str]) -> str:
    """A pattern for ``\\b(?:word|word…)``, the longest first, factored by common prefixes.

    The same matches as the plain alternation, found about 4 times faster over a long log:
    at each position the engine follows one branch per character instead of trying every
    word (there are 130 strerror texts). Each word starts with its first character then
    the word boundary check (see above).
    """
    tree: dict = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def branches(node: dict, top: bool = False) -> str:
        alts = [re.escape(ch) + (f"(?<=\\b{re.escape(ch)})" if top else "") + branches(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"
        return f"(?:{body})?" if "" in node else body  # greedy: the longer word first

    return branches(tree, top=True)


@functools.cache
def _errno_by_message() -> dict[str, int]:
    out: dict[str, int] = {}
    for value in sorted(errno.errorcode):
        out.setdefault(os.strerror(value), value)
    return out


def _hv_name(m: re.Match) -> tuple[int, str, str] | None:
    name = m.group(0)
    return (_by_name("hvf")[name], name, name) if name in _by_name("hvf") else None


def _hv_value(m: re.Match) -> tuple[int, str, str] | None:
    raw = next(g for g in m.groups() if g is not None)
    value = int(raw, 16) if raw.lower().startswith("0x") else int(raw) & 0xFFFFFFFF
    return (value, _table("hvf")[value], m.group(0)) if value in _table("hvf") else None


def hvf_codes_in(text: str) -> list[tuple[int, str, str]]:
    """Hypervisor.framework codes in ``text``: by name, hex, or signed 32-bit (libkrun's ``err -85377021``)."""
    return _found("hvf", text)


def _errno_number(m: re.Match) -> tuple[int, str, str] | None:
    value = int(next(g for g in m.groups() if g is not None))
    return (value, f"{errno.errorcode[value]}: {os.strerror(value)}", m.group(0)) if value in errno.errorcode else None


def _errno_message(m: re.Match) -> tuple[int, str, str]:
    value = _errno_by_message()[m.group(1)]
    return (value, f"{errno.errorcode[value]}: {m.group(1)}", m.group(0))


def errnos_in(text: str) -> list[tuple[int, str, str]]:
    """errno values in ``text`` ("Bad address (os error 14)", "[Errno 13]", "error -12"): (value, "EFAULT: Bad address", as written)."""
    return _found("errno", text)


# crosvm / rutabaga / libkrun print virtio-gpu commands and responses by name
# (GpuResponse::ErrUnspec, VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB, ErrInvalidResourceId).
# (GpuResponse:: needs no alternative of its own: "::" is a word boundary before the name.)
_GPU_NAME = re.compile(r"VIRTIO_GPU_(?<=\bVIRTIO_GPU_)(CMD|RESP)_(\w+)\b|((?:Err(?<=\bErr)|OkNo(?<=\bOkNo))[A-Z][A-Za-z]+)\b")


def _gpu_name(m: re.Match) -> tuple[str, int, str] | None:
    if m.group(1):
        section, name = ("commands" if m.group(1) == "CMD" else "responses"), m.group(2)
    else:
        section, name = "responses", re.sub(r"(?<!^)(?=[A-Z])", "_", m.group(3)).upper()
    table = _by_name("virtio_gpu", section)
    return (section, table[name], name) if name in table else None


def virtio_gpu_names_in(text: str) -> list[tuple[str, int, str]]:
    """virtio-gpu commands/responses named in ``text``: (section, value, canonical name)."""
    return _found("virtio_gpu", text)


_KVM = re.compile(r"KVM: entry failed, hardware error (0x[0-9a-fA-F]+)|KVM internal error\. Suberror: (\d+)|exit_reason(?<=\bexit_reason)[ =:]+(\d+)|KVM_EXIT_(?<=\bKVM_EXIT_)([A-Z_]+)")


def _kvm(m: re.Match) -> tuple[str, str, str] | None:
    doc = _load("kvm")
    if m.group(1):
        value = int(m.group(1), 16)
        reason = doc["vmx_basic_exit_reasons"].get(value & 0xFFFF, f"VMX exit reason {value & 0xFFFF}")
        return ("KVM entry failure", m.group(1), f"{reason}{' (VM-entry failure)' if value & 0x80000000 else ''}")
    if m.group(2):
        return ("KVM internal error", m.group(2), doc["internal_suberrors"].get(int(m.group(2)), "unknown suberror"))
    if m.group(3):
        return ("KVM exit reason", m.group(3), doc["exit_reasons"].get(int(m.group(3)), "unknown exit reason"))
    names = {v: k for k, v in doc["exit_reasons"].items()}
    return ("KVM exit reason", str(names[m.group(4)]), m.group(4)) if m.group(4) in names else None


def kvm_codes_in(text: str) -> list[tuple[str, str, str]]:
    """KVM exit reasons and entry failures: (kind, value, meaning)."""
    return _found("kvm", text)


Decode = Callable[[re.Match], "tuple | None"]


@functools.cache
def matchers() -> dict[str, tuple[tuple[re.Pattern, Decode], ...]]:
    """Each family of codes: its patterns and, for each, what a match decodes to (None: no code).

    The ``*_in`` functions apply them to one text; diagnosis applies them to a whole log at once.
    """
    return {
        "vkresult": ((_VK_NAMED, _vk_named), (_VK_CAMEL, _vk_camel), (_VK_NUMBER, _vk_number)),
        "hvf": ((_HV_NAME, _hv_name), (_HV_VALUE, _hv_value)),
        "errno": ((_ERRNO, _errno_number), (_errno_messages(), _errno_message)),
        "virtio_gpu": ((_GPU_NAME, _gpu_name),),
        "kvm": ((_KVM, _kvm),),
    }


def _found(family: str, text: str) -> list[tuple]:
    return [f for pattern, decode in matchers()[family] for m in pattern.finditer(text) if (f := decode(m)) is not None]


def venus_messages() -> dict[str, str]:
    """Mesa Venus / virtio-gpu guest messages (regex) → what they mean."""
    return {str(k): " ".join(str(v).split()) for k, v in _load("venus_messages").items()}
