"""Reading the JSON files glassbox keeps (run configs, tokenizers, SAE configs, sidecars)
and those it imports (Hugging Face configs): one clear line when a file is broken, in the
error class of whoever asked, instead of a JSONDecodeError traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glassbox.errors import GlassboxError


def read_json(path: Path, what: str, error: type[GlassboxError] = GlassboxError) -> Any:
    """The JSON value in `path`; `what` names the file in the error ("run config")."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text: the {what} is corrupt") from None
    except json.JSONDecodeError as err:
        raise error(
            f"{path} is not valid JSON ({err.msg}, line {err.lineno}): the {what} is corrupt"
        ) from None
