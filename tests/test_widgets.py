import pytest
import torch

from aae_tutorial import widgets


def decode(z):
    return torch.sigmoid(z.sum(1, keepdim=True)).expand(-1, 784)  # brightness follows z1 + z2


def test_static_rendering_holds_every_grid_image():
    bundle = widgets.latent_explorer(decode, lim=2.0, n=5, title="t")._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("data:image/png;base64,") == 25 and 'max="4"' in bundle["text/html"]


def test_live_sliders_decode_on_every_change():
    explorer = widgets.latent_explorer(decode, lim=2.0, n=5)
    before = explorer.image.value
    explorer.z1.value = 1.5
    after = explorer.image.value
    explorer.z2.value = -1.5  # z1 + z2 = 0 again: the first image comes back
    assert after != before and explorer.image.value == before


@pytest.mark.parametrize("kw, message", [({"n": 1}, "n must be"), ({"lim": 0.0}, "lim must be")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        widgets.latent_explorer(decode, **kw)
