"""Train/eval mode for a block of code, with every submodule's own mode restored afterwards.

``module.train(flag)`` sets ``flag`` on every submodule, so the usual
``was_training = m.training; m.eval(); ...; m.train(was_training)`` restores one flag for the whole
tree. A model whose submodules were in different modes comes back wrong: BatchNorm layers that
:func:`ssdlite.models.batchnorm.freeze_batchnorm` put in eval mode inside a training model would come
back in train mode and update their statistics again. :func:`in_mode` records the flag of every
submodule and puts each back as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def in_mode(*modules: nn.Module, training: bool) -> Iterator[None]:
    """Run the block with ``modules`` (and all their submodules) in train (``training=True``) or eval
    mode; afterwards, also on an exception, every submodule has the mode it had before.

    Entering calls ``module.train(training)``, so a module that overrides ``train`` is obeyed; leaving
    sets each submodule's ``training`` flag directly, since calling ``train`` again would recurse and
    overwrite the submodules' own flags.
    """
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.train(training)
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def evaluating(*modules: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``with evaluating(model): ...`` runs the block in eval mode; see :func:`in_mode`."""
    return in_mode(*modules, training=False)
