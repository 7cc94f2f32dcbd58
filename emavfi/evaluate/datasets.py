"""The benchmark sets in their published layouts: which files make each sample (see docs/evaluation.md).

`items(set_name, root, subset)` lists a set's samples without reading any image: each `Item` names its two
input frames and the truth frame(s) with their times. A folder in the wrong layout fails at once with one
line naming the file that was expected; a sample with a missing frame names that frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import EmaVfiError, SettingsError

SETS = ("vimeo90k", "ucf101", "snu-film", "middlebury", "xiph", "x4k")
SUBSETS = {"snu-film": ("easy", "medium", "hard", "extreme"), "xiph": ("resized", "cropped"), "x4k": ("2k", "4k")}
MIDDLEBURY_NAMES = ("Beanbags", "Dimetrodon", "DogDance", "Grove2", "Grove3", "Hydrangea", "MiniCooper",
                    "RubberWhale", "Urban2", "Urban3", "Venus", "Walking")
XIPH_NAMES = ("BoxingPractice", "Crosswalk", "DrivingPOV", "FoodMarket", "FoodMarket2", "RitualDance",
              "SquareAndTimelapse", "Tango")
X4K_KEY_STEP = 32  # key frames every 32 frames; 7 in-betweens 4 frames apart (8x)



def subsets(set_name: str, subset: str | None) -> list[str | None]:
    """The subsets to run: those named in `subset` ("easy,hard"), else every subset of the set (None for sets
    without). SettingsError naming the choices for an unknown one."""
    choices = SUBSETS.get(set_name)
    if not subset:
        return list(choices) if choices else [None]
    wanted = [s.strip().lower() for s in subset.split(",") if s.strip()]
    if not choices or any(s not in choices for s in wanted):
        allowed = ", ".join(choices) if choices else "none (this set has no subsets)"
        raise SettingsError(f"--subset for {set_name}: choose from {allowed}; got {subset!r}")
    return wanted

class LayoutError(EmaVfiError, ValueError):
    """A data set folder is not in the layout its protocol expects; the message names the expected file."""


@dataclass(frozen=True)
class Item:
    """One sample: two input frames and the truth frame(s) between them at times t in (0, 1)."""

    name: str
    inputs: tuple[Path, Path]
    targets: tuple[tuple[Fraction, Path], ...]
    target_names: tuple[str, ...] = ()  # one sample name per target; default: the item's name (one target)

    def sample_names(self) -> tuple[str, ...]:
        """The names of the samples this item scores (one per truth frame)."""
        return self.target_names or (self.name,)

    def check(self) -> None:
        """LayoutError naming the first frame of this sample that does not exist."""
        for path in (*self.inputs, *(p for _, p in self.targets)):
            if not path.is_file():
                raise LayoutError(f"sample {self.name}: missing frame {path}")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise LayoutError(f"{path.parent} is not {what}: expected {path}")
    return path


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def vimeo90k(root: Path) -> list[Item]:
    """tri_testlist.txt lists SEQ/CLIP; frames sequences/SEQ/CLIP/im1.png, im2.png (truth), im3.png."""
    listing = _need(root / "tri_testlist.txt", "the Vimeo90K triplet set (vimeo_triplet)")
    _need(root / "sequences", "the Vimeo90K triplet set (vimeo_triplet)")
    out = []
    for line in _lines(listing):
        clip = root / "sequences" / line
        out.append(Item(line, (clip / "im1.png", clip / "im3.png"), ((Fraction(1, 2), clip / "im2.png"),)))
    return out


def ucf101(root: Path) -> list[Item]:
    """One folder per sample: frame_00.png, frame_01_gt.png (truth), frame_02.png."""
    if not root.is_dir():
        raise LayoutError(f"UCF101 folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders or not (folders[0] / "frame_00.png").exists():
        first = folders[0] if folders else root / "SAMPLE"
        raise LayoutError(f"{root} is not the UCF101 test set: expected {first / 'frame_00.png'} "
                          "(one folder per sample with frame_00.png, frame_01_gt.png, frame_02.png)")
    return [Item(f.name, (f / "frame_00.png", f / "frame_02.png"), ((Fraction(1, 2), f / "frame_01_gt.png"),))
            for f in folders]


def _inside(root: Path, text: str) -> Path:
    """A listed path under root: as given, else with leading folders dropped (lists often start data/SNU-FILM/)."""
    parts = Path(text).parts
    if Path(text).is_absolute() or ".." in parts:
        raise LayoutError(f"list entry {text!r} must be a path relative to {root}")
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.exists():
            return candidate
    return root.joinpath(*parts)


def snu_film(root: Path, level: str) -> list[Item]:
    """test-LEVEL.txt: each line 'I0 I1 I2' (I1 the truth), paths relative to the set root."""
    listing = _need(root / f"test-{level}.txt", "the SNU-FILM set")
    out = []
    for number, line in enumerate(_lines(listing), 1):
        fields = line.split()
        if len(fields) != 3:
            raise LayoutError(f"{listing.name} line {number}: expected three paths 'I0 I1 I2'; got {line!r}")
        first, truth, last = (_inside(root, f) for f in fields)
        out.append(Item(fields[1], (first, last), ((Fraction(1, 2), truth),)))
    return out


def middlebury(root: Path) -> list[Item]:
    """other-data/NAME/frame10.png, frame11.png; truth other-gt-interp/NAME/frame10i11.png."""
    what = "the Middlebury 'other' set"
    _need(root / "other-data" / MIDDLEBURY_NAMES[0] / "frame10.png", what)
    _need(root / "other-gt-interp" / MIDDLEBURY_NAMES[0] / "frame10i11.png", what)
    return [Item(name, (root / "other-data" / name / "frame10.png", root / "other-data" / name / "frame11.png"),
                 ((Fraction(1, 2), root / "other-gt-interp" / name / "frame10i11.png"),))
            for name in MIDDLEBURY_NAMES]


def xiph(root: Path) -> list[Item]:
    """NAME-NNN.png, frames 1..99: frames k-1 and k+1 predict k for k = 2, 4 ... 98."""
    _need(root / f"{XIPH_NAMES[0]}-001.png", "the Xiph set")

    def frame(name: str, k: int) -> Path:
        return root / f"{name}-{k:03d}.png"

    return [Item(f"{name}-{k:03d}", (frame(name, k - 1), frame(name, k + 1)), ((Fraction(1, 2), frame(name, k)),))
            for name in XIPH_NAMES for k in range(2, 99, 2)]


def x4k(root: Path) -> list[Item]:
    """TYPE/SCENE/*.png in sorted order: key frames idx, idx+32 predict idx+4, idx+8 ... idx+28 (t = 1/8 ... 7/8)."""
    scenes = sorted({p.parent for p in root.glob("*/*/*.png")})
    if not scenes:
        raise LayoutError(f"{root} is not X4K1000FPS XTest: expected TYPE/SCENE/0000.png "
                          "(e.g. Type1/TEST01_003_f0433/0000.png)")
    out = []
    for scene in scenes:
        frames = sorted(scene.glob("*.png"))
        if len(frames) <= X4K_KEY_STEP:
            raise LayoutError(f"{scene} has {len(frames)} frames; an XTest scene needs at least {X4K_KEY_STEP + 1}")
        name = scene.relative_to(root).as_posix()
        for idx in range(0, len(frames) - X4K_KEY_STEP, X4K_KEY_STEP):
            targets = tuple((Fraction(m + 1, 8), frames[idx + 4 * (m + 1)]) for m in range(7))
            out.append(Item(f"{name}/{frames[idx].stem}", (frames[idx], frames[idx + X4K_KEY_STEP]), targets,
                            tuple(f"{name}/{path.stem}" for _, path in targets)))
    return out


def items(set_name: str, root: str | Path, subset: str | None = None) -> list[Item]:
    """The samples of a set (subset: the SNU-FILM level; Xiph and X4K subsets share one list of files)."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data set folder not found: {root}")
    if set_name == "snu-film":
        return snu_film(root, subset or "easy")
    readers = {"vimeo90k": vimeo90k, "ucf101": ucf101, "middlebury": middlebury, "xiph": xiph, "x4k": x4k}
    if set_name not in readers:
        raise LayoutError(f"unknown data set {set_name!r}; choose one of {', '.join(SETS)}")
    return readers[set_name](root)
