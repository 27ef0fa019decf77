"""Local stand-ins for the public images docker-compose.yml names, built from Debian's
own packages (these machines reach Debian's mirror but no image registry):

* a bookworm root filesystem from ``debootstrap --variant=minbase``, from the mirror
  this machine's apt sources name, imported with ``docker import``;
* on top of it, ``tests/compose/standins/<name>/Dockerfile``: ``python`` (Debian's Python
  3.11, standing in for python:3.11-slim-bookworm as Wattlab's base), ``postgres``
  (PostgreSQL 15 for postgres:16) and ``redis`` (Redis 7 for redis:7).

Each image is tagged with a hash of its recipe (this file's recipe constants, the
Dockerfile and what sits beside it, the base's tag) and built only when no image has
that tag: a machine builds them once, and again only when a recipe changes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from tests.compose.dockerhost import DockerError, image_exists, run

HERE = Path(__file__).resolve().parent / "standins"
SUITE = "bookworm"
#: What debootstrap installs and what is removed before the import: the package cache
#: and lists (apt-get update fetches them again), and this machine's names
#: (debootstrap copies the host's hostname and resolver; Docker provides its own).
BASE_RECIPE = (
    f"debootstrap --variant=minbase {SUITE}",
    "remove var/cache/apt/archives/*.deb var/lib/apt/lists/* etc/hostname etc/resolv.conf",
)
NAMES = ("python", "postgres", "redis")
MIRROR_ENV = "WATTLAB_DEBIAN_MIRROR"


def _hash(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:12]


def base_tag() -> str:
    return f"wattlab-standin/{SUITE}-minbase:{_hash(*(p.encode() for p in BASE_RECIPE))}"


def standin_tag(name: str) -> str:
    folder = HERE / name
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    parts = [base_tag().encode()]
    for path in files:
        parts += [str(path.relative_to(folder)).encode(), path.read_bytes()]
    return f"wattlab-standin/{name}:{_hash(*parts)}"


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The mirror this machine's apt sources use for ``suite`` main (one-line ``.list``
    files and deb822 ``.sources`` files alike); ``$WATTLAB_DEBIAN_MIRROR`` wins."""
    given = os.environ.get(MIRROR_ENV, "").strip()
    if given:
        return given
    files = [apt_dir / "sources.list"]
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in {".list", ".sources"})
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        entries = _deb822(text) if path.suffix == ".sources" else _one_line(text)
        for uri, suites, components in entries:
            if suite in suites and "main" in components:
                return uri
    raise DockerError(
        f"no {suite} main entry in {apt_dir}/sources.list or sources.list.d; "
        f"set {MIRROR_ENV} to a Debian mirror"
    )


_Entry = tuple[str, list[str], list[str]]


def _one_line(text: str) -> list[_Entry]:
    entries = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        # deb [options] URI suite component...
        if words[:1] != ["deb"]:
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 3:
            entries.append((words[0], [words[1]], words[2:]))
    return entries


def _deb822(text: str) -> list[_Entry]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        suites = fields.get("suites", "").split()
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            entries.append((uri, suites, components))
    return entries


def build_base() -> str:
    """The bookworm minbase image (debootstrap + docker import), unless it exists. The
    root filesystem is made in a temporary folder outside the checkout (never in the
    build context of Wattlab's image) and removed."""
    tag = base_tag()
    if image_exists(tag):
        return tag
    if not shutil.which("debootstrap") and not Path("/usr/sbin/debootstrap").exists():
        raise DockerError("debootstrap is not installed (Debian package debootstrap)")
    folder = Path(tempfile.mkdtemp(prefix="wattlab-standin-rootfs-"))
    try:
        rootfs = folder / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), debian_mirror()],
            timeout=900,
        )
        for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"):
            for path in rootfs.glob(pattern):
                if path.is_file():
                    path.unlink()
        for name in ("etc/hostname", "etc/resolv.conf"):
            (rootfs / name).unlink(missing_ok=True)
        tarball = folder / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], timeout=300)
        run(["docker", "import", "--change", 'CMD ["bash"]', str(tarball), tag], timeout=300)
    finally:
        # debootstrap's files belong to root: removed as root.
        run(["rm", "-rf", "--one-file-system", str(folder)], timeout=300, check=False)
    return tag


def build_standin(name: str, base: str) -> str:
    tag = standin_tag(name)
    if not image_exists(tag):
        run(
            ["docker", "build", "--build-arg", f"BASE={base}", "-t", tag, str(HERE / name)],
            timeout=900,
        )
    return tag


def build_all() -> dict[str, str]:
    """Every stand-in's tag by name, building what this machine does not have yet."""
    base = build_base()
    return {name: build_standin(name, base) for name in NAMES}
