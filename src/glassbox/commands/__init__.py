"""One module per `glassbox` command, each with the same two functions:

    add_parser(subparsers)   add the command and its flags; set_defaults(handler=run)
    run(args) -> int         do it through the Python API, print, return the exit code

A new command is a new module here and one line in COMMANDS. Modules import only
argparse, the configs and glassbox.errors at the top, and the library (and so torch)
inside `run`, so `glassbox --help` starts without importing torch.
"""

from glassbox.commands import (
    compare,
    count,
    embed,
    eval,
    export_model,
    fill_mask,
    import_model,
    inspect,
    rag,
    sae,
    sample,
    superposition,
    tokenize,
    train,
)

# In the order `glassbox --help` lists them.
COMMANDS = [train, sample, eval, fill_mask, count, tokenize, compare, inspect, superposition,
            sae, embed, rag, import_model, export_model]  # fmt: skip
