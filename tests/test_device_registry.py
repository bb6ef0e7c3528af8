"""``MySet.cuda()`` reaches :mod:`engram_numba.gpu` through the device registry of
:mod:`engram_numba._kernel_arg`, which the gpu package fills when imported (the package
facade names the module), so nothing below gpu imports it (``tests/test_layers.py``)."""

import pytest


def test_an_unregistered_device_kind_says_what_to_import():
    from engram_numba import _kernel_arg
    with pytest.raises(RuntimeError, match="no tpu device support registered"):
        _kernel_arg.device("tpu")
    assert _kernel_arg._device_modules["cuda"] == "engram_numba.gpu"   # the facade's say
