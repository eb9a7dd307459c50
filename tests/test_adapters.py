"""loader.torch(), loader.tf(), loader.jax(): real frameworks, real training loops."""

from __future__ import annotations

import collections
import threading
from pathlib import Path

import numpy as np
import pytest

import chute

pytestmark = pytest.mark.frameworks

Sample = collections.namedtuple("Sample", "image label")


def regression(n: int = 512) -> chute.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5], np.float32) + 0.3)[:, None]
    return chute.from_arrays({"x": x}, y)


# -- PyTorch -------------------------------------------------------------------------------------
def test_torch_batches_share_memory_with_numpy() -> None:
    torch = pytest.importorskip("torch")
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    batches = list(chute.from_arrays(x, np.arange(20)).loader(8).torch())
    first, labels = batches[0]
    assert isinstance(first, torch.Tensor) and first.dtype == torch.float32 and labels.dtype == torch.int64
    assert first.data_ptr() == x.ctypes.data  # unshuffled batches are views: no copy on the way
    assert [len(b[1]) for b in batches] == [8, 8, 4]


def test_torch_gives_text_and_bytes_as_lists_as_the_dataloader_collate_does() -> None:
    torch = pytest.importorskip("torch")
    names = np.array(["ant", "bee", "cat"])  # <U3
    blobs = np.array([b"\x00a", b"b", b"cc"])  # |S2
    (text, raw, label), *_ = chute.from_arrays(names, blobs, np.arange(3)).loader(2).torch()
    assert text == ["ant", "bee"] and raw == [b"\x00a", b"b"] and isinstance(label, torch.Tensor)
    collated = torch.utils.data.default_collate([("ant", b"\x00a"), ("bee", b"b")])
    assert [text, raw] == [list(field) for field in collated]


def test_read_only_memory_maps_are_copied_not_shared(tmp_path: object) -> None:
    pytest.importorskip("torch")
    path = f"{tmp_path}/x.npy"
    np.save(path, np.ones((10, 2), np.float32))
    (batch,) = next(iter(chute.from_arrays(np.load(path, mmap_mode="r")).loader(5).torch()))
    batch += 1  # writable, and the file is untouched
    assert float(np.load(path)[0, 0]) == 1.0


def test_a_plain_torch_training_loop_learns() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = regression().loader(32, shuffle=True, seed=0, workers=2).torch()
    losses = []
    for _ in range(5):
        for inputs, target in batches:
            loss = torch.nn.functional.mse_loss(model(inputs["x"]), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]
    assert batches.loader.epoch == 5


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX, when loaded, warns on any fork
def test_torch_dataloader_passes_batches_through_and_refuses_its_own_workers() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    loader = chute.from_arrays(np.arange(10)).loader(4)
    assert [b[0].tolist() for b in DataLoader(loader.torch(), batch_size=None)] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    with pytest.raises(Exception, match="each worker would replay the whole epoch"):
        list(DataLoader(loader.torch(), batch_size=None, num_workers=2))
    with pytest.warns(UserWarning, match="pin_memory=True has no effect"):
        pinned = loader.torch(pin_memory=not torch.cuda.is_available())
    assert len(pinned) == 3


def test_a_torch_loop_left_part_way_carries_on_and_with_whole_is_a_peek() -> None:
    pytest.importorskip("torch")
    batches = chute.from_arrays(np.arange(10)).loader(4).torch()
    for _ in batches:
        break  # [0, 1, 2, 3] taken: the next loop carries on (limit_train_batches, a break)
    assert [b[0].tolist() for b in batches] == [[4, 5, 6, 7], [8, 9]]
    loader = chute.from_arrays(np.arange(10)).loader(4, shuffle=True, seed=1, workers=2)
    whole = loader.torch(whole=True)
    epochs = [[loader.batch(b, e)[0].tolist() for b in range(3)] for e in range(2)]
    peek = iter(whole)
    assert [next(peek)[0].tolist(), next(peek)[0].tolist()] == epochs[0][:2]
    peek.close()  # Lightning's sanity check: two batches, then the loop is dropped
    assert (loader.state_dict()["epoch"], loader.state_dict()["consumed"]) == (0, 0)
    assert [[b[0].tolist() for b in whole] for _ in range(2)] == [epochs[0]] * 2
    assert loader.position() == (0, 0, 0)  # iterating with whole=True changes nothing
    loader.on_epoch_end()
    assert [b[0].tolist() for b in whole] == epochs[1]


def test_two_whole_torch_iterations_at_once_are_independent() -> None:
    pytest.importorskip("torch")
    loader = chute.from_arrays(np.arange(10)).loader(3, shuffle=True, seed=2, workers=2)
    for _ in loader:
        break  # the loader stands part-way through epoch 0: a whole iteration is all of it
    position = loader.position()
    expected = [loader.batch(b, 0)[0].tolist() for b in range(len(loader))]
    batches = loader.torch(whole=True)
    first, second = iter(batches), iter(batches)
    got: tuple[list[object], list[object]] = ([], [])
    for _ in range(len(loader)):
        got[0].append(next(first)[0].tolist())
        got[1].append(next(second)[0].tolist())
    assert next(first, None) is None and next(second, None) is None
    assert got == (expected, expected) and loader.position() == position


def test_a_whole_torch_iteration_reads_ahead() -> None:
    pytest.importorskip("torch")
    asked = threading.Event()

    def note(sample: tuple[np.ndarray]) -> tuple[np.ndarray]:
        if int(sample[0]) == 4:  # the first sample of batch 1
            asked.set()
        return sample

    loader = chute.from_arrays(np.arange(12)).map(note).loader(4, workers=2, prefetch=2)
    batches = iter(loader.torch(whole=True))
    next(batches)
    assert asked.wait(timeout=60)  # batch 1 is read while batch 0 is in use, before it is asked for
    batches.close()
    assert loader.position() == (0, 0, 0)


class Tokens:
    """A batch object of the user's own, with nothing in it that chute knows how to look into."""

    def __init__(self, samples: list[tuple[np.ndarray]]) -> None:
        self.ids = [int(s[0]) for s in samples]


def to_tokens(samples: list[tuple[np.ndarray]]) -> Tokens:
    return Tokens(samples)


def with_tokens(samples: list[tuple[np.ndarray]]) -> tuple[np.ndarray, Tokens]:
    return np.stack([s[0] for s in samples]), Tokens(samples)


def test_a_collate_batch_of_any_object_is_handed_over_as_it_is() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = chute.from_arrays(np.arange(10))
    loader = ds.loader(4, collate=to_tokens, workers=2)
    expected = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b.ids for b in loader] == expected
    assert [b.ids for b in loader.torch()] == expected
    assert [b.ids for b in DataLoader(loader.torch(), batch_size=None)] == expected
    mixed = ds.loader(4, collate=with_tokens, workers=2, worker_type="process")
    x, tokens = next(iter(mixed.torch()))  # arrays beside the object still become tensors
    assert isinstance(x, torch.Tensor) and isinstance(tokens, Tokens)
    assert x.tolist() == tokens.ids == expected[0]


def test_tf_refuses_a_collate_batch_it_cannot_describe() -> None:
    pytest.importorskip("tensorflow")
    loader = chute.from_arrays(np.arange(10)).loader(4, collate=to_tokens)
    with pytest.raises(chute.SpecError, match=r"tf\.data can describe.*Return numpy arrays from collate="):
        loader.tf()


@pytest.mark.parametrize("framework", ["torch", "jax", "tf"])
def test_namedtuple_batches_keep_their_type_in_every_adapter(framework: str) -> None:
    pytest.importorskip({"tf": "tensorflow"}.get(framework, framework))
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10)
    for ds in (chute.from_arrays(Sample(x, y)), chute.from_arrays(x, y).map(lambda s: Sample(*s))):
        batches = list(getattr(ds.loader(4), framework)())
        assert [type(b) for b in batches] == [Sample] * 3
        assert np.asarray(batches[2].label).tolist() == [8, 9]


# -- TensorFlow ----------------------------------------------------------------------------------
def test_tf_element_spec_comes_from_the_spec_without_reading() -> None:
    tf = pytest.importorskip("tensorflow")
    reads = []

    def count(batch: object) -> object:
        reads.append(1)
        return batch

    ds = regression().map_batch(count)
    ds.spec  # noqa: B018  (the map's spec is found from sample 0, once)
    reads.clear()
    data = ds.loader(64).tf()
    assert not reads
    x_spec, y_spec = data.element_spec
    assert x_spec["x"] == tf.TensorSpec((None, 3), tf.float32, name="0_x")
    assert y_spec.shape.as_list() == [None, 1]
    assert int(data.cardinality()) == 8
    epoch = [(x["x"].numpy(), y.numpy()) for x, y in data]
    assert sum(len(y) for _, y in epoch) == 512 and len(reads) == 8


@pytest.mark.parametrize("where", ["ram", "workers", "generator"])
def test_tf_batch_dimension_is_static_with_drop_remainder(where: str) -> None:
    """tf.data's batch(drop_remainder=True) gives a static batch size, which XLA and TPUs rely on."""
    pytest.importorskip("tensorflow")
    ds = regression(100)
    if where == "workers":
        ds = ds.map_batch(lambda batch: batch)
    elif where == "generator":
        ds = chute.from_generator(lambda: iter(regression(100)), length=100)
    data = ds.loader(32, drop_remainder=True, workers=2 if where == "workers" else 0).tf()
    x_spec, y_spec = data.element_spec
    assert x_spec["x"].shape.as_list() == [32, 3] and y_spec.shape.as_list() == [32, 1]
    batches = [y.numpy() for _, y in data]
    assert [len(b) for b in batches] == [32, 32, 32]
    ragged = ds.loader(32).tf()  # the last batch is short: the dimension stays unknown
    assert ragged.element_spec[1].shape.as_list() == [None, 1]


@pytest.mark.parametrize("where", ["ram", "memmap"])
def test_tf_batches_are_the_iteration_batches_epoch_after_epoch(tmp_path: object, where: str) -> None:
    """Arrays in RAM are gathered inside TensorFlow; memory maps go through chute's workers: the
    batches are the same either way, and an epoch read part-way is served again whole."""
    tf = pytest.importorskip("tensorflow")
    x = np.arange(300 * 2, dtype=np.float32).reshape(300, 2)
    if where == "memmap":
        np.save(f"{tmp_path}/x.npy", x)
        x = np.load(f"{tmp_path}/x.npy", mmap_mode="r")
    ds = chute.from_arrays({"x": x}, np.arange(300))
    expected = ds.loader(64, shuffle=True, seed=5)
    want = [[b[1].tolist() for b in expected] for _ in range(3)]
    loader = ds.loader(64, shuffle=True, seed=5)
    data = loader.tf()
    for _, _ in zip(range(2), data, strict=False):  # abandoned part-way: the epoch does not move
        pass
    assert loader.epoch == 0
    got = [[y.numpy().tolist() for _, y in data] for _ in range(3)]
    assert got == want and loader.epoch == 3
    features, labels = next(iter(data))
    assert features["x"].dtype == tf.float32
    assert features["x"].numpy()[:, 0].tolist() == [2.0 * i for i in labels.numpy().tolist()]
    assert loader.stats()["samples"] >= 900


def test_tf_data_works_under_tf_distribute() -> None:
    tf = pytest.importorskip("tensorflow")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    loader = regression(128).loader(32, shuffle=True, seed=1)
    distributed = strategy.experimental_distribute_dataset(loader.tf())
    totals = [
        float(strategy.reduce("SUM", strategy.run(lambda x, y: tf.reduce_sum(y), args=b), axis=None))
        for b in distributed
    ]
    _, y = regression(128)[np.arange(128)]
    assert len(totals) == 4 and abs(sum(totals) - float(y.sum())) < 1e-3


# -- JAX -----------------------------------------------------------------------------------------
def test_jax_batches_are_device_arrays_and_train() -> None:
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    batches = regression().loader(32, shuffle=True, seed=0).jax(device_prefetch=2)

    def loss(w: object, x: object, y: object) -> object:
        return jnp.mean((x @ w[:3] + w[3] - y[:, 0]) ** 2)

    step = jax.jit(lambda w, x, y: w - 0.1 * jax.grad(loss)(w, x, y))
    w = jnp.zeros(4)
    first = None
    for _ in range(5):
        for inputs, target in batches:
            assert isinstance(inputs["x"], jax.Array)
            first = first if first is not None else float(loss(w, inputs["x"], target))
            w = step(w, inputs["x"], target)
    assert float(loss(w, inputs["x"], target)) < 0.01 * first  # type: ignore[operator]


def test_jax_batches_are_sharded_across_devices() -> None:
    jax = pytest.importorskip("jax")
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.devices()
    assert len(devices) == 2  # XLA_FLAGS from conftest: two CPU devices
    sharding = NamedSharding(Mesh(np.array(devices), ("data",)), PartitionSpec("data"))
    x = np.arange(64, dtype=np.float32).reshape(32, 2)
    batches = list(chute.from_arrays(x).loader(8).jax(sharding=sharding))
    (first,) = batches[0]
    assert first.sharding == sharding and len(first.addressable_shards) == 2
    assert np.array_equal(np.asarray(first), x[:8]) and len(batches) == 4


# -- ragged fields -------------------------------------------------------------------------------
def sequences(n: int = 40) -> chute.Dataset:
    lengths = np.random.default_rng(0).integers(1, 9, n)
    return chute.from_arrays({"n": lengths}).map(
        lambda s: {"tokens": np.arange(int(s["n"]), dtype=np.float32), "y": np.float32(s["n"])},
        ragged=["tokens"],
    )


def test_ragged_fields_become_tf_ragged_tensors() -> None:
    tf = pytest.importorskip("tensorflow")
    expected = [b["tokens"] for b in sequences().loader(8, shuffle=True, seed=0)]
    batches = list(sequences().loader(8, shuffle=True, seed=0).tf())
    assert len(batches) == 5 and isinstance(batches[0]["tokens"], tf.RaggedTensor)
    for got, want in zip(batches, expected, strict=True):
        assert [r.tolist() for r in got["tokens"].numpy()] == [w.tolist() for w in want]
        assert got["y"].numpy().tolist() == [len(w) for w in want]


def test_ragged_fields_become_torch_nested_tensors() -> None:
    torch = pytest.importorskip("torch")
    loader = sequences().loader(8)
    batch = next(iter(loader.torch(nested=True)))
    assert batch["tokens"].is_nested and batch["tokens"].size(0) == 8
    assert [t.tolist() for t in batch["tokens"].unbind()] == [r.tolist() for r in loader[0]["tokens"]]
    padded = next(iter(sequences().loader(8, pad=True).torch()))
    assert isinstance(padded["tokens"], torch.Tensor) and padded["tokens"].shape == (
        8,
        int(padded["y"].max()),
    )


# -- a generator, through every adapter ------------------------------------------------------------
def regression_samples() -> object:
    rng = np.random.default_rng(0)
    for _ in range(512):
        x = rng.normal(size=3).astype(np.float32)
        yield {"x": x}, np.float32([x @ np.array([1.5, -2.0, 0.5], np.float32) + 0.3])


@pytest.mark.parametrize("framework", ["torch", "tf", "jax", "keras"])
def test_every_adapter_trains_on_a_generator(framework: str) -> None:
    """``from_generator(...).loader(...)`` is a Loader like any other: each adapter trains on it."""
    loader = chute.from_generator(regression_samples, length=512).loader(32, workers=2, prefetch=3)
    losses: list[float] = []
    if framework == "torch":
        torch = pytest.importorskip("torch")
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(5):
            for inputs, target in loader.torch():
                loss = torch.nn.functional.mse_loss(model(inputs["x"]), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    elif framework == "jax":
        jax = pytest.importorskip("jax")
        import jax.numpy as jnp

        def mse(w: object, x: object, y: object) -> object:
            return jnp.mean((x @ w[:3] + w[3] - y[:, 0]) ** 2)

        step = jax.jit(lambda w, x, y: w - 0.1 * jax.grad(mse)(w, x, y))
        w = jnp.zeros(4)
        for _ in range(5):
            for inputs, target in loader.jax():
                losses.append(float(mse(w, inputs["x"], target)))
                w = step(w, inputs["x"], target)
    elif framework == "tf":
        tf = pytest.importorskip("tensorflow")
        w, b = tf.Variable(tf.zeros((3, 1))), tf.Variable(0.0)
        for _ in range(5):
            for inputs, target in loader.tf():
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean((inputs["x"] @ w + b - target) ** 2)
                dw, db = tape.gradient(loss, [w, b])
                w.assign_sub(0.1 * dw)
                b.assign_sub(0.1 * db)
                losses.append(float(loss))
    else:
        keras = pytest.importorskip("keras")
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,), name="x")
        model = keras.Model({"x": inputs}, keras.layers.Dense(1)(inputs))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        losses = model.fit(loader.keras(), epochs=5, verbose=0, shuffle=False).history["loss"]
    assert losses[-1] < 0.05 * losses[0]
    assert loader.epoch == 5
    loader.close()


def test_every_adapter_gives_the_class_names(tmp_path: Path) -> None:
    """As Keras's ``image_dataset_from_directory(...).class_names``: label i is class_names[i]."""
    from chute.images.codecs import encode_jpeg

    for i, name in enumerate(["cat", "dog", "cat", "eel"]):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{i}.jpg").write_bytes(encode_jpeg(np.full((8, 8, 3), 40 * i, np.uint8)))
    loader = chute.image_folder(str(tmp_path)).loader(2)
    assert loader.class_names == ["cat", "dog", "eel"]
    for adapter in (loader.keras, loader.tf, loader.jax, loader.torch):
        assert adapter().class_names == ["cat", "dog", "eel"], adapter
    assert chute.from_arrays(np.zeros((4, 2))).loader(2).keras().class_names is None
