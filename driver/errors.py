"""Errors the CLI turns into one clear line and a non-zero exit.

Every failure a user can cause or meet (bad input, a missing pin, a component
that lacks Venus) is a ``VenusReproError`` whose message names the fix. Anything
else reaching the CLI is a bug in venus-repro and is reported as such.
"""


class VenusReproError(Exception):
    """A failure with a message meant for the user; exit status 2."""

    exit_code = 2


class UsageError(VenusReproError):
    """Bad input: unknown profile or demo, a kernel path that is not a kernel."""


class PinError(VenusReproError):
    """The lock file and the package mirror disagree, or a pin is missing."""


class ProvisionError(VenusReproError):
    """A component could not be provisioned."""


class MachineError(VenusReproError):
    """QEMU could not be started or driven."""


class Terminated(BaseException):
    """SIGTERM arrived: unwound like Ctrl-C (result.json written, QEMU stopped), exit status 143."""


def shown(text) -> str:
    """``text`` (from someone's file) as an error line may hold it: as written if printable, else quoted and escaped."""
    text = str(text)
    return text if text.isprintable() else repr(text)


def read_limited(path, max_bytes: int, what: str, hint: str = "") -> bytes:
    """The bytes of someone's file ``path`` (at most ``max_bytes``), or one UsageError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc.strerror}){hint}") from None
    if len(data) > max_bytes:
        raise UsageError(f"{path}: larger than {max_bytes >> 10} KiB: not a {what}")
    return data
