"""The verdict: which expected outcomes held, each as a named check.

A run passes only if every check holds. The checks are what a user of this
project relies on: the guest booted the kernel the profile asks for (page size
from the guest itself, not from a file name), every demo ran on the Venus
driver, and its frame is bit-identical to the same demo on host lavapipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from .codes import vk_result_name
from .protocol import DemoOutput
from .result import Check, GuestFacts, RunResult

# A demo's exit status when the driver lacks what it needs (demos/vr.h VR_EXIT_UNSUPPORTED).
UNSUPPORTED_EXIT = 77


@dataclasses.dataclass
class DemoRun:
    """One demo on one side (guest or host), from its structured output."""

    name: str
    exit_status: int | None
    output: DemoOutput
    duration_s: float | None = None
    frame_png: str | None = None
    started: bool = False  # the guest said it began this step (its console), whatever came back

    @property
    def result(self) -> dict:
        return self.output.result or {}

    @property
    def outcome(self) -> str:
        """pass / unsupported (the driver lacks what the demo needs) / error (a Vulkan failure) / crash / timeout / missing."""
        if self.exit_status is None:
            return "missing"
        if self.result.get("outcome") == "pass" and self.exit_status == 0:
            return "pass"
        if self.result.get("outcome") == "unsupported" and self.exit_status == UNSUPPORTED_EXIT:
            return "unsupported"
        if self.result.get("outcome") == "error" or self.output.vk_errors:
            return "error"
        if self.exit_status in (137, -9):
            return "timeout"
        return "crash"

    @property
    def vk_result(self) -> int | None:
        if "vk_result" in self.result:
            return int(self.result["vk_result"])
        return self.output.vk_errors[-1][0] if self.output.vk_errors else None

    @property
    def failed_call(self) -> str | None:
        if "call" in self.result:
            return self.result["call"]
        return self.output.vk_errors[-1][1] if self.output.vk_errors else None

    def failure(self) -> str:
        if self.outcome == "error":
            vk = self.vk_result
            name = vk_result_name(vk) if vk is not None else "unknown VkResult"
            return f"{name} ({vk}) at {self.failed_call}"
        if self.outcome == "unsupported":
            return f"{self.result.get('device') or 'the driver'}: {self.result.get('reason') or 'no reason given'}"
        if self.outcome == "timeout":
            return "killed after its timeout"
        if self.outcome == "crash":
            return f"exited with status {self.exit_status} and no result line"
        if self.outcome == "missing":
            return not_finished(self.started)
        return ""


def not_finished(started: bool) -> str:
    """Why a step has no exit status."""
    if started:
        return "began but never finished (the guest stopped during it; console.log shows how far it got)"
    return "did not run (the guest never reached it)"


def page_size_check(guest_page_size: int | None, required: int, kernel_desc: str) -> Check:
    if guest_page_size is None:
        return Check("guest page size", False, "the guest did not report its page size (it did not boot to /init)")
    if guest_page_size != required:
        return Check(
            "guest page size",
            False,
            f"the guest runs with {guest_page_size // 1024}K pages but the profile requires "
            f"{required // 1024}K: the wrong kernel was booted ({kernel_desc})",
        )
    return Check("guest page size", True, f"{guest_page_size // 1024}K pages, as the profile requires")


def demo_checks(guest: DemoRun, host: DemoRun | None) -> list[Check]:
    """Checks for one demo; ``host`` None: this profile has no host reference (no frame check)."""
    n = guest.name
    checks = []
    if guest.outcome == "unsupported" or (host is not None and host.outcome == "unsupported"):
        # What a driver lacks, Venus must report as the host's driver does: both or neither.
        agree = host is None or host.outcome == guest.outcome
        side = guest if guest.outcome == "unsupported" else host
        detail = side.failure() + ("" if agree else f"; but the {'host' if side is guest else 'guest'} runs it")
        return [Check(f"{n}: unsupported on the host's driver and in the guest alike", agree, detail)]
    if guest.outcome == "pass":
        checks.append(Check(f"{n}: runs in the guest", True, f"{guest.result.get('fps', 0):.0f} FPS"))
    else:
        checks.append(Check(f"{n}: runs in the guest", False, guest.failure()))
    driver = guest.result.get("driver")
    if guest.outcome == "pass":
        checks.append(
            Check(
                f"{n}: on the Venus driver",
                driver == "venus",
                f"driver '{driver}', device '{guest.result.get('device')}'",
            )
        )
    if host is None:
        pass
    elif host.outcome != "pass":
        checks.append(Check(f"{n}: runs on the host", False, host.failure()))
    elif guest.outcome == "pass":
        g, h = guest.result.get("checksum"), host.result.get("checksum")
        checks.append(
            Check(
                f"{n}: frame equals the host's",
                g == h,
                f"guest {g} {'==' if g == h else '!='} host {h}",
            )
        )
    return checks


def expected_failure_checks(guest: DemoRun, expect) -> list[Check]:
    """A known failure must keep failing the same way: outcome, VkResult and call."""
    got_name = vk_result_name(guest.vk_result) if guest.vk_result is not None else None
    held = (
        guest.outcome == expect.outcome
        and (expect.vk_result is None or got_name == expect.vk_result)
        and (expect.call is None or guest.failed_call == expect.call)
    )
    want = f"{expect.outcome}" + (f" {expect.vk_result}" if expect.vk_result else "") + (
        f" at {expect.call}" if expect.call else ""
    )
    got = guest.failure() if guest.outcome != "pass" else "it passed"
    detail = f"expected {want}; got {got}"
    if held:
        detail = f"fails as expected: {got}"
    return [Check(f"{guest.name}: known failure", held, detail)]


@dataclasses.dataclass
class ProgramRun:
    """A scenario's guest program: exit status and output."""

    name: str
    exit_status: int | None
    stdout: str
    stderr: str
    outputs: dict[str, str | None] = dataclasses.field(default_factory=dict)  # guest path → run-directory copy (None: not written)
    started: bool = False  # as DemoRun.started
    duration_s: float | None = None


def _first_difference(a: str, b: str) -> str:
    for i, (la, lb) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
        if la != lb:
            return f"line {i}: guest {la[:120]!r} / host {lb[:120]!r}"
    return f"guest {len(a.splitlines())} lines / host {len(b.splitlines())} lines"


def host_compare_checks(guest: ProgramRun, host: ProgramRun | None, compare) -> list[Check]:
    """The differential check: the guest's outputs against the same command's on the host's driver."""
    n = guest.name
    if host is None or host.exit_status is None:
        return [Check(f"{n}: ran on the host", False, "the host run did not happen (no host reference in this profile?)")]
    checks = []
    if compare.stdout:
        g, h = compare.apply(guest.stdout), compare.apply(host.stdout)
        checks.append(Check(f"{n}: stdout equals the host's", g == h,
                            "equal" + (" after normalisation" if compare.normalize else "") if g == h else _first_difference(g, h)))  # fmt: skip
    if compare.outputs:
        for path, copy in guest.outputs.items():
            other = host.outputs.get(path)
            if copy is None or other is None:
                checks.append(Check(f"{n}: {path} equals the host's", False, f"not written on the {'guest' if copy is None else 'host'}"))
                continue
            a, b = Path(copy).read_bytes(), Path(other).read_bytes()
            same = a == b
            detail = f"{len(a)} bytes, equal" if same else (
                f"guest {len(a)} bytes sha256 {hashlib.sha256(a).hexdigest()[:16]} / host {len(b)} bytes sha256 "
                f"{hashlib.sha256(b).hexdigest()[:16]}; both kept: {copy}, {other}"
            )  # fmt: skip
            checks.append(Check(f"{n}: {path} equals the host's", same, detail))
    return checks


# The Vulkan loader (VK_LOADER_DEBUG=layer) names each layer it inserts; the Khronos
# layer's default callback prints each message it finds ("Validation Error: [ VUID-… ]").
_LAYER_LOADED = re.compile(r'Insert(?:ed)? instance layer:? "?VK_LAYER_KHRONOS_validation')
_VALIDATION_ERROR = re.compile(r"^.*Validation Error:.*$", re.M)


def validation_report(output: bytes) -> dict:
    """What a step's output says of the validation layer: loaded, and the errors it reported."""
    text = output.decode(errors="replace")
    errors = _VALIDATION_ERROR.findall(text)
    return {"validation_layer": bool(_LAYER_LOADED.search(text)), "validation_errors": len(errors),
            "validation_first_error": errors[0][:300] if errors else None}  # fmt: skip


def validation_checks(name: str, report: dict, must_load: bool = True) -> list[Check]:
    """A demo must load the layer and get no error from it; any other step, no error (it may not use Vulkan)."""
    loaded = bool(report.get("validation_layer"))
    count = report.get("validation_errors") or 0
    checks = []
    if must_load:
        checks.append(Check(f"{name}: validation layer loaded", loaded,
                            "VK_LAYER_KHRONOS_validation inserted" if loaded else "the loader did not insert VK_LAYER_KHRONOS_validation"))  # fmt: skip
    detail = f"{count} error(s)" + (f": {report.get('validation_first_error')}" if count else "")
    checks.append(Check(f"{name}: no validation errors", (loaded or not must_load) and count == 0, detail))
    return checks


def program_checks(run: ProgramRun, step) -> list[Check]:
    n = run.name
    if run.exit_status is None:
        return [Check(f"{n}: ran", False, not_finished(run.started))]
    checks = []
    if step.exit is not None:
        checks.append(Check(f"{n}: exit status", run.exit_status == step.exit, f"{run.exit_status} (expected {step.exit})"))
    for stream, patterns in (("stdout", step.stdout), ("stderr", step.stderr)):
        text = getattr(run, stream)
        for pattern in patterns:
            found = re.search(pattern, text, re.M)
            detail = f"'{found.group(0)}'" if found else "not found"
            checks.append(Check(f"{n}: {stream} matches /{pattern}/", found is not None, detail))
    for path, copy in run.outputs.items():
        checks.append(Check(f"{n}: wrote {path}", copy is not None, copy or "not written (the step's stderr says why)"))
    return checks


def _float(text: str | None) -> float | None:
    """A number from the guest's facts (untrusted text): None unless it is one."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def guest_facts(facts: dict[str, str]) -> GuestFacts:
    """What the guest said of itself, parsed (it is untrusted text)."""
    page_kb = facts.get("page_size_kb", "")
    # ASCII digits only ("²".isdigit() holds, and int() refuses it).
    page = int(page_kb) * 1024 if re.fullmatch(r"[0-9]{1,9}", page_kb) else None
    icds = {}
    for entry in (facts.get("vulkan_icds") or "").split():
        name, _, digest = entry.partition("=")
        if re.fullmatch(r"[\w.+-]{1,200}", name) and re.fullmatch(r"[0-9a-f]{64}", digest):
            icds[name] = digest
    return GuestFacts(
        page_size=page,
        kernel_release=facts.get("kernel_release"),
        render_node=facts.get("render_node"),
        uptime_at_finish_s=_float(facts.get("finished_uptime")),
        machine=facts.get("machine"),
        vulkan_icds=icds or None,
    )


def assemble(result: RunResult, step_checks: list[Check], failure: str | None, kernel_desc: str) -> None:
    """The verdict of one run: the page-size check, each step's checks in order, the run's own failure."""
    checks = [page_size_check(result.guest.page_size, result.required_page_size or 0, kernel_desc), *step_checks]
    if failure:
        checks.append(Check("the guest ran to completion", False, failure))
    result.checks = checks
    result.verdict = "pass" if all(ch.ok for ch in checks) else "fail"


def expect_findings(result: RunResult, expected: tuple[str, ...]) -> None:
    """A known bug kept as a scenario: the run passes only if it failed with these findings.

    The checks that ran stay in ``observed_checks``; ``checks`` becomes the one
    check on the findings.
    """
    found = [f["id"] for f in result.findings]
    missing = [f for f in expected if f not in found]
    result.observed_checks = result.checks
    detail = f"found {', '.join(found) or 'none'}"
    if missing:
        detail = f"missing {', '.join(missing)} ({detail}); if the bug is fixed, update the scenario"
    result.checks = [Check("expected findings", not missing, detail)]
    result.verdict = "fail" if missing or result.verdict == "error" else "pass"
