"""Transform ``fftwhitening``: a radial whitening filter in the Fourier domain, per frame."""

from core import hookimpl


@hookimpl
def core_transforms() -> dict[str, str]:
    return {"fftwhitening": "plugins.whitening.transform:FFTWhitening"}
