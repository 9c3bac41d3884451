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
    before, start = explorer.image.value, (explorer.z1.value, explorer.z2.value)
    explorer.z1.value = 0.5
    after = explorer.image.value
    explorer.z1.value, explorer.z2.value = start[1], 0.5  # z1 + z2 = 2.5 again: the same image
    changed = explorer.image.value
    explorer.z1.value, explorer.z2.value = start  # back at the start
    assert after != before and changed == after and explorer.image.value == before


def test_explorers_start_at_the_crispest_digit_not_at_the_origin():
    explorer = widgets.latent_explorer(decode, lim=2.0, n=5)
    assert (explorer.z1.value, explorer.z2.value) == (2.0, 2.0)  # z1 + z2 = 4: the most saturated image
    html = explorer._repr_mimebundle_()["text/html"]
    assert 'class="z1" min="0" max="4" value="4"' in html and 'class="z2" min="0" max="4" value="4"' in html


def test_explorers_given_codes_start_inside_their_cloud():
    # a ring around an empty middle: the median (0, 0) holds no code; the start is the grid point nearest the code
    # closest to it, (1.2, 1.2)
    codes = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, -2.0], [0.0, 2.0], [1.2, 1.2]])
    explorer = widgets.latent_explorer(decode, lim=2.0, n=5, codes=codes)
    assert (explorer.z1.value, explorer.z2.value) == (1.0, 1.0)
    codes = torch.tensor([[-1.9, 1.1]] * 5)
    explorer = widgets.latent_explorer(decode, lim=2.0, n=5, codes=codes)
    assert (explorer.z1.value, explorer.z2.value) == (-2.0, 1.0)
    html = explorer._repr_mimebundle_()["text/html"]
    assert 'class="z1" min="0" max="4" value="0"' in html and 'class="z2" min="0" max="4" value="3"' in html
    with pytest.raises(ValueError, match=r"codes must be a non-empty \(N, 2\) tensor"):
        widgets.latent_explorer(decode, lim=2.0, n=5, codes=torch.zeros(4, 3))


@pytest.mark.parametrize("kw, message", [({"n": 1}, "n must be"), ({"lim": 0.0}, "lim must be")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        widgets.latent_explorer(decode, **kw)
