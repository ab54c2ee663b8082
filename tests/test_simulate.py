"""Tests of scripts.simulate: calibration, Poisson noise scaling, sparse-view streaks, determinism, validation,
and of the fast projector against scikit-image's radon / iradon."""

import multiprocessing
from dataclasses import replace

import numpy as np
import pytest
from skimage.transform import iradon, radon

from scripts.synthesis.projector import iradon_fast, radon_fast
from scripts.synthesis.simulate import (
    SimulatorConfig,
    SliceSimulator,
    calibrate_full_dose,
    full_view_count,
    projection_angles,
    simulate_low_dose,
    soft_tissue_mask,
    soft_tissue_noise,
)

SIZE = 128
PIXEL_MM = 2.2  # a 128-pixel grid covering 280 mm, an abdominal field of view


def _phantom(size: int = SIZE) -> np.ndarray:
    """Abdomen-like HU phantom: fat-rimmed soft-tissue body, a liver, a vertebra and a gas pocket, in air."""
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) / size
    hu = np.full((size, size), -1000.0)
    hu[(xx / 0.42) ** 2 + (yy / 0.32) ** 2 <= 1] = -100.0
    hu[(xx / 0.38) ** 2 + (yy / 0.28) ** 2 <= 1] = 40.0
    hu[((xx + 0.15) / 0.15) ** 2 + ((yy + 0.05) / 0.12) ** 2 <= 1] = 60.0
    hu[(xx**2 + (yy - 0.18) ** 2) <= 0.05**2] = 700.0
    hu[((xx - 0.18) ** 2 + yy**2) <= 0.04**2] = -900.0
    return hu


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return _phantom()


@pytest.fixture(scope="module")
def sim(phantom: np.ndarray) -> SliceSimulator:
    simulator = SliceSimulator(phantom, PIXEL_MM)
    simulator.calibrate()
    return simulator


def _noise(sim: SliceSimulator, dose: float, seed: int = 1, n_views: int | None = None) -> float:
    mask = soft_tissue_mask(sim.input_hu)
    return soft_tissue_noise(sim.simulate(dose, n_views, seed), sim.noiseless(n_views), mask)


def test_full_dose_is_calibrated_into_clinical_noise_range(sim: SliceSimulator):
    calibration = sim.calibrate()
    assert calibration.target_noise_hu == 15.0
    assert calibration.n_views == full_view_count(SIZE) == 208
    assert 13.5 <= calibration.noise_hu <= 16.5
    for seed in (3, 4):
        assert 10.0 <= _noise(sim, 1.0, seed) <= 20.0


def test_noise_grows_as_one_over_sqrt_dose(sim: SliceSimulator):
    full = _noise(sim, 1.0)
    assert _noise(sim, 0.25) / full == pytest.approx(2.0, rel=0.1)
    assert _noise(sim, 1.0 / 16) / full == pytest.approx(4.0, rel=0.15)


def test_fewer_views_at_same_per_view_flux_add_noise(sim: SliceSimulator):
    # Half the views at the same per-view flux is half the exposure: noise grows by about sqrt(2).
    ratio = _noise(sim, 1.0, n_views=104) / _noise(sim, 1.0)
    assert ratio == pytest.approx(np.sqrt(2.0), rel=0.15)


def test_streak_energy_grows_as_views_fall(sim: SliceSimulator, phantom: np.ndarray):
    # Noiseless reconstructions isolate the sparse-view error (streaks) from noise.
    full = sim.noiseless()
    body = phantom > -500
    energy = {n: float(np.sqrt(np.mean((sim.noiseless(n) - full)[body] ** 2))) for n in (104, 52, 26)}
    assert 0 < energy[104] < energy[52] < energy[26]
    assert energy[26] > 3 * energy[104]
    # With noise added the sparse scan still departs further from the full-view noiseless image.
    err_full = np.sqrt(np.mean((sim.simulate(1.0, None, 5) - full)[body] ** 2))
    err_sparse = np.sqrt(np.mean((sim.simulate(1.0, 26, 5) - full)[body] ** 2))
    assert err_sparse > 2 * err_full


def test_noiseless_reconstruction_differs_from_input_but_not_by_much(sim: SliceSimulator, phantom: np.ndarray):
    # Why noise is measured against the noiseless FBP and not against the input slice: the reconstruction error
    # alone (interpolation, ramp-filter ringing at sharp edges) is a sizeable fraction of the 15 HU noise target.
    mask = soft_tissue_mask(phantom)
    diff = sim.noiseless()[mask] - phantom[mask]
    assert 1.0 < np.abs(diff).mean() < 15.0


def test_same_seed_same_image_and_different_seed_different(sim: SliceSimulator):
    a = sim.simulate(0.5, 52, seed=7)
    b = sim.simulate(0.5, 52, seed=7)
    c = sim.simulate(0.5, 52, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0
    generator = sim.simulate(0.5, 52, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a, generator)


def test_simulate_low_dose_is_deterministic_and_keeps_shape_dtype_and_air(phantom: np.ndarray):
    config = SimulatorConfig(full_dose_i0=2.0e5)
    out = simulate_low_dose(phantom, dose=0.5, n_views=52, seed=3, pixel_size_mm=PIXEL_MM, config=config)
    again = simulate_low_dose(phantom, dose=0.5, n_views=52, seed=3, pixel_size_mm=PIXEL_MM, config=config)
    assert out.shape == phantom.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, again)
    corner = out[:12, :12]
    assert abs(float(corner.mean()) + 1000.0) < 30.0


def test_per_slice_calibration_does_not_depend_on_seed(phantom: np.ndarray):
    a = simulate_low_dose(phantom, dose=1.0, seed=1, pixel_size_mm=PIXEL_MM)
    sim = SliceSimulator(phantom, PIXEL_MM)
    np.testing.assert_array_equal(a, sim.simulate(1.0, None, 1))
    reused = SliceSimulator(phantom, PIXEL_MM, SimulatorConfig(full_dose_i0=sim.full_dose_i0))
    np.testing.assert_array_equal(a, reused.simulate(1.0, None, 1))


def test_calibrate_full_dose_hits_other_targets(phantom: np.ndarray):
    low = calibrate_full_dose(phantom, PIXEL_MM, target_noise_hu=10.0)
    high = calibrate_full_dose(phantom, PIXEL_MM, target_noise_hu=20.0)
    assert low.noise_hu == pytest.approx(10.0, rel=0.1)
    assert high.noise_hu == pytest.approx(20.0, rel=0.1)
    # Variance ~ 1 / I0: halving the noise target asks for four times the flux.
    assert low.i0 / high.i0 == pytest.approx(4.0, rel=0.15)


def test_values_below_air_are_treated_as_air(phantom: np.ndarray):
    padded = phantom.copy()
    padded[padded == -1000.0] = -3024.0  # scanner field-of-view padding
    config = SimulatorConfig(full_dose_i0=1.0e5)
    a = simulate_low_dose(phantom, 0.5, 52, 2, PIXEL_MM, config)
    b = simulate_low_dose(padded, 0.5, 52, 2, PIXEL_MM, config)
    np.testing.assert_array_equal(a, b)


def test_circle_mode_sets_outside_of_the_field_of_view_to_air(phantom: np.ndarray):
    config = SimulatorConfig(full_dose_i0=1.0e5, circle=True)
    out = simulate_low_dose(phantom, 1.0, None, 0, PIXEL_MM, config)
    assert out[0, 0] == -1000.0 and out[-1, -1] == -1000.0
    assert 10.0 < float(out[SIZE // 2 - 5 : SIZE // 2 + 5, SIZE // 2 - 5 : SIZE // 2 + 5].mean()) < 80.0


def test_circle_is_chosen_only_when_nothing_lies_outside_it(phantom: np.ndarray):
    assert SliceSimulator(phantom, PIXEL_MM).circle is True
    cornered = phantom.copy()
    cornered[:12, :12] = 40.0  # tissue in a corner, as in a cropped slice
    padded = SliceSimulator(cornered, PIXEL_MM, SimulatorConfig(full_dose_i0=1.0e5))
    assert padded.circle is False
    out = padded.simulate(1.0, None, 0)
    assert 0.0 < float(out[2:10, 2:10].mean()) < 80.0  # the corner anatomy survives
    forced = SliceSimulator(cornered, PIXEL_MM, SimulatorConfig(full_dose_i0=1.0e5, circle=True))
    assert forced.simulate(1.0, None, 0)[0, 0] == -1000.0


def test_rectangular_slices_keep_their_shape():
    hu = _phantom(128)[16:112, :]
    out = simulate_low_dose(hu, 1.0, 64, 0, PIXEL_MM, SimulatorConfig(full_dose_i0=1.0e5))
    assert out.shape == (96, 128)


def test_sparse_sinograms_are_exact_subsets_of_the_full_scan(sim: SliceSimulator):
    sim.sinogram()  # full scan cached first, so 52 views are taken from it
    subset = sim.sinogram(52)
    np.testing.assert_array_equal(subset, sim.sinogram()[:, ::4])
    direct = radon_fast(sim._mu, 52, circle=sim.circle) * PIXEL_MM
    np.testing.assert_allclose(subset, direct, rtol=1e-5, atol=1e-5)
    skimage = SliceSimulator(sim.input_hu, PIXEL_MM, SimulatorConfig(full_dose_i0=1e5, projector="skimage"))
    skimage.sinogram()
    expected = radon(skimage._mu, projection_angles(52), circle=skimage.circle) * PIXEL_MM
    np.testing.assert_allclose(skimage.sinogram(52), expected, rtol=1e-10, atol=1e-10)


def _test_image(size: int, circle: bool) -> np.ndarray:
    """Attenuation-like image with sharp edges and texture; anatomy in a corner when not in circle mode."""
    yy, xx = np.mgrid[:size, :size] - size // 2
    image = 0.02 * ((xx / (0.4 * size)) ** 2 + (yy / (0.3 * size)) ** 2 <= 1)
    image += 0.02 * ((xx - 0.1 * size) ** 2 + yy**2 < (0.05 * size) ** 2)
    image += 0.002 * np.random.default_rng(0).random((size, size)) * (image > 0)
    if not circle:
        image[2:8, 2:8] = 0.02
    return image


@pytest.mark.parametrize("size, circle", [(128, True), (128, False), (97, True), (64, False)])
@pytest.mark.parametrize("n_views", [208, 26, 101])
def test_fast_projector_matches_skimage(size: int, circle: bool, n_views: int):
    image = _test_image(size, circle)
    theta = projection_angles(n_views)
    expected = radon(image, theta, circle=circle)
    sinogram = radon_fast(image, n_views, circle)
    assert sinogram.shape == expected.shape
    # float32 sums; only the outermost pixels of a padded square's corners are sampled slightly differently.
    np.testing.assert_allclose(sinogram, expected, atol=1e-5 * expected.max() if circle else 2e-3)
    yy, xx = np.mgrid[:size, :size] - size // 2
    interior = xx**2 + yy**2 <= (0.45 * size) ** 2
    for filter_name in ("ramp", "hann", None):
        reference = iradon(expected, theta, output_size=size, filter_name=filter_name, circle=circle)
        fbp = iradon_fast(expected, size, filter_name, circle)
        error = np.abs(fbp - reference)[interior].max() / np.abs(reference[interior]).max()
        assert error < 1e-5, (filter_name, error)


def test_fast_and_skimage_simulators_agree_on_noise_and_streaks(phantom: np.ndarray):
    config = SimulatorConfig(full_dose_i0=2.0e5)
    fast = SliceSimulator(phantom, PIXEL_MM, config)
    slow = SliceSimulator(phantom, PIXEL_MM, replace(config, projector="skimage"))
    body, mask = phantom > -500, soft_tissue_mask(phantom)
    assert np.abs(fast.noiseless() - slow.noiseless())[body].max() < 0.1  # HU
    for dose in (1.0, 0.1):
        ratio = _noise(fast, dose, 3) / _noise(slow, dose, 3)
        assert ratio == pytest.approx(1.0, abs=0.05), dose
    # Sparse-view streaks (n_full / 8), noiseless so that only the view sampling differs.
    streaks = {
        name: float((s.noiseless(26) - s.noiseless())[body].std()) for name, s in (("fast", fast), ("slow", slow))
    }
    assert streaks["slow"] > 20.0  # the streaks are strong enough for the comparison to mean something
    assert streaks["fast"] / streaks["slow"] == pytest.approx(1.0, abs=0.1)
    assert soft_tissue_noise(fast.simulate(1.0, 26, 4), fast.noiseless(26), mask) > 0


def test_fast_projector_is_deterministic_across_cache_rebuilds(phantom: np.ndarray):
    from scripts.synthesis import projector

    config = SimulatorConfig(full_dose_i0=2.0e5)
    first = SliceSimulator(phantom, PIXEL_MM, config).simulate(0.5, 52, seed=9)
    projector.clear_cache()
    np.testing.assert_array_equal(first, SliceSimulator(phantom, PIXEL_MM, config).simulate(0.5, 52, seed=9))


def _project_in_child(image: np.ndarray, queue) -> None:
    queue.put(radon_fast(image, 52, circle=True))


def test_fast_projector_runs_in_a_forked_worker_after_the_parent_used_it(phantom: np.ndarray):
    # OpenMP's thread pool does not survive fork: without the projector's guard the child hangs here.
    image = np.maximum(phantom, -1000.0) / 1000.0 + 1.0
    expected = radon_fast(image, 52, circle=True)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_project_in_child, args=(image, queue))
    child.start()
    try:
        result = queue.get(timeout=60)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(result, expected)


def _large_patient(size: int = 96, pixel_mm: float = 4.6) -> np.ndarray:
    """A 40 x 32 cm water-equivalent abdomen with spine, pelvic bones and a couch: line integrals up to about 10."""
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * pixel_mm  # mm
    hu = np.full((size, size), -1000.0)
    hu[(xx / 200) ** 2 + (yy / 160) ** 2 <= 1] = 40.0
    for centre in (-120.0, 120.0):  # iliac / femoral bone, on the long axis
        hu[(xx - centre) ** 2 + yy**2 <= 32.0**2] = 1200.0
    hu[xx**2 + (yy - 100) ** 2 <= 22.0**2] = 900.0  # vertebra
    hu[(np.abs(yy - 175) <= 6) & (np.abs(xx) <= 190)] = 300.0  # couch
    return hu


def test_calibration_reaches_target_on_a_large_dense_patient():
    hu = _large_patient()
    sim = SliceSimulator(hu, 4.6)
    assert sim.sinogram().max() > 9.5  # the densest rays see fewer than 10 photons at the 1e5 first probe
    calibration = sim.calibrate()
    assert calibration.noise_hu == pytest.approx(15.0, rel=0.05)
    assert _noise(sim, 1.0, seed=11) == pytest.approx(15.0, rel=0.05)
    # The first probe is starved: its single estimate overshoots the flux, so keeping it (as an average of the
    # probes does) would leave the calibrated noise well under target.
    mask = soft_tissue_mask(hu)
    probe = sim.config.probe_i0
    starved = sim.reconstruct(sim.noisy_line_integrals(probe, None, np.random.default_rng(0)))
    first_estimate = probe * (soft_tissue_noise(starved, sim.noiseless(), mask) / 15.0) ** 2
    assert first_estimate > 1.5 * calibration.i0
    averaged = SliceSimulator(hu, 4.6, SimulatorConfig(full_dose_i0=(first_estimate + calibration.i0) / 2))
    assert _noise(averaged, 1.0, seed=11) < 0.9 * 15.0


def test_full_view_count_is_nyquist_rounded_to_multiple_of_8():
    assert [full_view_count(n) for n in (128, 256, 512)] == [208, 408, 808]
    assert all(full_view_count(n) % 8 == 0 and full_view_count(n) >= np.pi / 2 * n for n in range(8, 600, 37))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hu": np.zeros((4, 32, 32))}, "2-D"),
        ({"hu": np.zeros(32)}, "2-D"),
        ({"hu": np.zeros((4, 4))}, "at least"),
        ({"hu": np.full((32, 32), np.nan)}, "NaN"),
        ({"dose": 0.0}, "dose"),
        ({"dose": -0.5}, "dose"),
        ({"dose": float("nan")}, "dose"),
        ({"n_views": 1}, "n_views"),
        ({"n_views": 10.5}, "n_views"),
        ({"pixel_size_mm": 0.0}, "pixel_size_mm"),
    ],
)
def test_invalid_inputs_raise_clear_errors(kwargs: dict, message: str):
    args = {"hu": _phantom(32), "config": SimulatorConfig(full_dose_i0=1.0e5), **kwargs}
    with pytest.raises(ValueError, match=message):
        simulate_low_dose(**args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mu_water_per_mm": 0.0},
        {"full_dose_i0": -1.0},
        {"target_noise_hu": 0.0},
        {"electronic_noise": -1.0},
        {"filter_name": "butterworth"},
        {"full_views": 1},
        {"projector": "astra"},
        {"interpolation": "cubic"},
        {"calibration_tolerance": 0.0},
    ],
)
def test_invalid_config_raises(kwargs: dict):
    with pytest.raises(ValueError):
        SimulatorConfig(**kwargs)


def test_slice_without_tissue_cannot_be_calibrated():
    with pytest.raises(ValueError, match="tissue"):
        calibrate_full_dose(np.full((32, 32), -1000.0))


def test_with_filter_reuses_the_sinogram_and_matches_a_fresh_simulator(phantom):
    ramp = SliceSimulator(phantom, PIXEL_MM, SimulatorConfig(full_dose_i0=1.0e5))
    ramp.simulate(1.0, None, seed=3)  # fills the sinogram cache
    hann = ramp.with_filter("hann")
    assert hann.sinogram() is ramp.sinogram()  # projected once, shared
    fresh = SliceSimulator(phantom, PIXEL_MM, SimulatorConfig(full_dose_i0=1.0e5, filter_name="hann"))
    np.testing.assert_array_equal(hann.simulate(0.5, None, seed=3), fresh.simulate(0.5, None, seed=3))
    assert ramp.config.filter_name == "ramp"  # the original is unchanged
    with pytest.raises(ValueError, match="filter_name"):
        ramp.with_filter("gauss")
