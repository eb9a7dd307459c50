"""A real Keras 3 model.fit (torch backend here) fed by chute loaders."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import chute

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.frameworks


class Record(keras.layers.Layer):  # type: ignore[misc]
    """Passes its input through and records, in training, the sample ids it saw (column 0)."""

    def __init__(self, seen: list[list[int]], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.record = seen.append  # a bound method: Keras does not wrap it as it wraps lists

    def call(self, inputs: object, training: bool = False) -> object:
        if training:
            self.record(keras.ops.convert_to_numpy(inputs)[:, 0].astype(int).tolist())
        return inputs


def two_input_data(n: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    y = (a[:, 0] + b[:, 1] > 0).astype(np.float32)[:, None]
    return a, b, y


def two_input_model() -> object:
    in_1 = keras.Input((4,), name="input_1")
    in_2 = keras.Input((3,), name="input_2")
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([in_1, in_2]))
    out = keras.layers.Dense(1, activation="sigmoid", name="output")(hidden)
    model = keras.Model({"input_1": in_1, "input_2": in_2}, {"output": out})
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss={"output": "binary_crossentropy"})
    return model


def test_keras_dataset_is_a_pydataset() -> None:
    loader = chute.from_arrays(np.zeros((10, 2)), np.zeros(10)).loader(4)
    wrapped = loader.keras()
    assert isinstance(wrapped, keras.utils.PyDataset)
    assert len(wrapped) == 3 and wrapped.num_batches == 3 and wrapped.loader is loader
    assert wrapped.workers == 1 and not wrapped.use_multiprocessing


def test_fit_two_input_model_with_dict_batches_learns() -> None:
    keras.utils.set_random_seed(0)
    a, b, y = two_input_data()
    train = chute.from_arrays({"input_1": a, "input_2": b}, {"output": y}).loader(32, shuffle=True, seed=0)
    val = chute.from_arrays({"input_1": a[:128], "input_2": b[:128]}, {"output": y[:128]}).loader(64)
    history = two_input_model().fit(train.keras(), epochs=6, validation_data=val.keras(), verbose=0)
    loss = history.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    assert history.history["val_loss"][-1] < 0.5 * loss[0]
    assert (train.epoch, train.step) == (6, 0)


def test_fit_with_named_fields_selected_for_keras() -> None:
    keras.utils.set_random_seed(0)
    a, b, y = two_input_data()
    loader = chute.from_arrays({"a": a, "b": b, "label": y}).loader(32, shuffle=True, seed=1)
    wrapped = loader.keras(x={"input_1": "a", "input_2": "b"}, y={"output": "label"})
    inputs, targets = wrapped[0]
    assert set(inputs) == {"input_1", "input_2"} and set(targets) == {"output"}
    history = two_input_model().fit(wrapped, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]


def test_sample_weights_reach_the_loss() -> None:
    x = np.random.default_rng(1).normal(size=(64, 2)).astype(np.float32)
    y = np.ones((64, 1), np.float32)

    def loss_with(weights: np.ndarray) -> float:
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        loader = chute.from_arrays(x, y, weights).loader(16)
        return float(model.evaluate(loader.keras(), verbose=0))

    assert loss_with(np.zeros(64, np.float32)) == 0.0
    assert loss_with(np.ones(64, np.float32)) > 0.0


def recording_model(seen: list[list[int]]) -> object:
    model = keras.Sequential([keras.Input((2,)), Record(seen), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)  # Record reads concrete values
    return model


def id_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
    return x, np.zeros((n, 1), np.float32)


def epoch_batches(loader: chute.Loader, epoch: int) -> list[list[int]]:
    return [loader.indices(i, epoch=epoch).tolist() for i in range(len(loader))]


@pytest.mark.parametrize(
    "pipeline",
    [{}, {"workers": 2, "prefetch": 3}, {"workers": 2, "prefetch": 3, "worker_type": "process"}],
    ids=["inline", "threads", "processes"],
)
def test_fit_serves_the_loader_order(pipeline: dict[str, object]) -> None:
    seen: list[list[int]] = []
    loader = chute.from_arrays(*id_data(50)).loader(8, shuffle=True, seed=3, **pipeline)  # type: ignore[arg-type]
    expected = epoch_batches(loader, 0) + epoch_batches(loader, 1)
    recording_model(seen).fit(loader.keras(), epochs=2, shuffle=False, verbose=0)
    assert seen == expected
    assert (loader.epoch, loader.step) == (2, 0)
    if pipeline:  # Keras asked in order, so the workers read ahead: batches were waiting
        assert loader.stats()["queue_depth_max"] >= 1  # type: ignore[operator]
    loader.close()


def test_fit_with_keras_shuffle_sees_each_sample_once_per_epoch() -> None:
    seen: list[list[int]] = []
    loader = chute.from_arrays(*id_data(50)).loader(8, shuffle=True, seed=3)
    expected = [sorted(epoch_batches(loader, e)) for e in range(3)]
    recording_model(seen).fit(loader.keras(), epochs=3, shuffle=True, verbose=0)
    assert [sorted(seen[e * 7 : (e + 1) * 7]) for e in range(3)] == expected
    assert loader.epoch == 3


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras cuts its 2nd epoch short
def test_steps_per_epoch_carries_the_epoch_over() -> None:
    seen: list[list[int]] = []
    loader = chute.from_arrays(*id_data(40)).loader(8, shuffle=True, seed=4)  # 5 batches an epoch
    stream = epoch_batches(loader, 0) + epoch_batches(loader, 1)
    recording_model(seen).fit(loader.keras(), epochs=4, steps_per_epoch=3, shuffle=False, verbose=0)
    assert seen == stream[: len(seen)]
    assert len(seen) == 10 and loader.epoch == 2  # Keras asked 3 + 2 + 3 + 2 batches


def test_concurrent_requests_cover_the_epoch_once() -> None:
    loader = chute.from_arrays(*id_data(400)).loader(4, shuffle=True, seed=6)
    wrapped = loader.keras()
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(wrapped.__getitem__, range(len(wrapped))))
    wrapped.on_epoch_end()
    assert sorted(np.concatenate([b[0][:, 0] for b in batches]).astype(int).tolist()) == list(range(400))
    assert loader.epoch == 1


def test_partial_epoch_does_not_advance() -> None:
    loader = chute.from_arrays(*id_data(40)).loader(8)
    wrapped = loader.keras()
    wrapped[0]
    wrapped.on_epoch_end()  # what Keras does after peeking at a batch to build the model
    assert loader.epoch == 0


def test_predict_keeps_sample_order() -> None:
    x, _ = id_data(30)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
    out = model.predict(chute.from_arrays(x).loader(7).keras(), verbose=0)
    np.testing.assert_allclose(out[:, 0], x.sum(axis=1), rtol=1e-6)


def test_indexing_outside_an_epoch_has_no_side_effect() -> None:
    loader = chute.from_arrays(*id_data(40)).loader(8, shuffle=True, seed=5)
    wrapped = loader.keras()
    first = wrapped[2][0][:, 0].tolist()
    assert wrapped[2][0][:, 0].tolist() == first == loader.indices(2).tolist()
    assert (loader.epoch, loader.step) == (0, 0)


def test_fit_on_loader_tf_learns_on_every_backend() -> None:
    pytest.importorskip("tensorflow")
    a, b, y = two_input_data()
    loader = chute.from_arrays({"input_1": a, "input_2": b}, {"output": y}).loader(32, shuffle=True, seed=0)
    model = two_input_model()
    history = model.fit(loader.tf(), epochs=6, shuffle=False, verbose=0)  # type: ignore[attr-defined]
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert loader.epoch == 6


def test_fit_on_a_keras_style_generator_with_steps_per_epoch() -> None:
    a, b, y = two_input_data(256)

    def lines() -> object:  # the Keras docs' style: a `while True` generator of samples
        while True:
            for i in range(256):
                yield {"input_1": a[i], "input_2": b[i]}, {"output": y[i]}

    loader = chute.from_generator(lines, steps=8).loader(32, workers=2)
    model = two_input_model()
    history = model.fit(loader.keras(), epochs=8, verbose=0, shuffle=False)  # type: ignore[attr-defined]
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert loader.epoch == 8  # 8 epochs of 8 batches: the stream was cut, never replayed or skipped
    loader.close()


def test_an_existing_keras_sequence_gets_chute_workers() -> None:
    class Tutorial(keras.utils.PyDataset):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.x, self.y = id_data(40)

        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            return self.x[i * 8 : (i + 1) * 8], self.y[i * 8 : (i + 1) * 8]

    loader = chute.from_sequence(Tutorial(), shuffle=True, seed=2, workers=2)
    firsts = sorted(int(x[0, 0]) for x, _ in loader)
    assert firsts == [0, 8, 16, 24, 32] and len(loader) == 5 and loader.epoch == 1
    seen: list[list[int]] = []
    recording_model(seen).fit(loader.keras(), epochs=2, shuffle=False, verbose=0)
    assert sorted(i for batch in seen[:5] for i in batch) == list(range(40)) and loader.epoch == 3
    loader.close()


def test_the_doctor_reports_each_epoch_into_keras_logs() -> None:
    x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    loader = chute.from_arrays(x, x.sum(axis=1, keepdims=True)).loader(32, shuffle=True, seed=0)
    lines: list[str] = []
    doctor = chute.keras.Doctor(loader, print_fn=lines.append)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(loader.keras(), epochs=2, verbose=0, callbacks=[doctor])
    assert [d.epoch for d in doctor.history] == [0, 1] and len(lines) == 2
    assert all(d.samples_per_s > 0 for d in doctor.history)
    assert len(history.history["input_waiting_fraction"]) == 2
    assert lines[0].startswith("epoch 0: ")


def test_fit_on_padded_bucketed_sequences_of_a_mix_split_into_train_and_validation() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def sentence(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, label = int(sample["n"]), int(sample["label"])
        return {"tokens": np.full(n, 1 + label, np.int32), "label": np.float32(label)}

    def part(label: int, count: int) -> chute.Dataset:
        lengths = rng.integers(2, 40, count)
        return chute.from_arrays({"n": lengths, "label": np.full(count, label)}).map(
            sentence, ragged=["tokens"]
        )

    train, val = chute.mix([part(0, 300), part(1, 200)], [0.5, 0.5], seed=0).split([0.8, 0.2], seed=1)
    options = dict(pad=chute.Pad(multiple=8), bucket=True)
    model = keras.Sequential(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(3, 4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(
        train.loader(32, shuffle=True, seed=0, **options).keras(x="tokens", y="label"),
        validation_data=val.loader(32, **options).keras(x="tokens", y="label"),
        epochs=3,
        verbose=0,
    )
    assert history.history["val_accuracy"][-1] == 1.0


# -- the Keras tutorial's generator, as written: whole batches, endless, cut by steps_per_epoch --
def process_line(line: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    number, half, third = (float(v) for v in line.split())
    return (
        np.array([[number, half, 1.0]], np.float32),
        np.array([[half, third]], np.float32),
        np.array([[third]], np.float32),
    )


def generate_arrays_from_file(path: str) -> object:  # copied from the Keras tutorial
    while True:
        with open(path) as f:
            for line in f:
                x1, x2, y = process_line(line)
                yield ({"input_1": x1, "input_2": x2}, {"output": y})


def tutorial_model(seen: list[list[int]]) -> object:
    keras.utils.set_random_seed(0)
    first = keras.Input((3,), name="input_1")
    second = keras.Input((2,), name="input_2")
    recorded = Record(seen)(first)
    joined = keras.layers.Concatenate()([recorded, second])
    output = keras.layers.Dense(1, name="output")(joined)
    model = keras.Model({"input_1": first, "input_2": second}, {"output": output})
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    return model


@pytest.mark.parametrize("shuffle", [True, False], ids=["fit-shuffle", "no-shuffle"])
@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed:UserWarning")  # (Keras, endless data)
def test_the_tutorial_generator_trains_as_keras_trains_it(tmp_path: object, shuffle: bool) -> None:
    import functools

    path = f"{tmp_path}/my_file.txt"
    with open(path, "w") as f:
        f.writelines(f"{i} {i / 2} {i % 3}\n" for i in range(25))
    runs = {}
    for how in ("keras", "chute"):
        seen: list[list[int]] = []
        model = tutorial_model(seen)
        if how == "keras":
            data = generate_arrays_from_file(path)
        else:
            lines = functools.partial(generate_arrays_from_file, path)
            data = chute.from_generator(lines, batched=True).loader().keras()
        history = model.fit(data, steps_per_epoch=10, epochs=3, shuffle=shuffle, verbose=0)
        runs[how] = (seen, [np.asarray(w) for w in model.get_weights()], len(history.history["loss"]))
    (seen_k, weights_k, epochs_k), (seen_c, weights_c, epochs_c) = runs["keras"], runs["chute"]
    assert seen_c == seen_k == [[i % 25] for i in range(30)]  # 30 steps, batches of one line, in order
    assert epochs_c == epochs_k == 3
    for mine, theirs in zip(weights_c, weights_k, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_a_generator_of_batches_keeps_its_batches_and_shapes() -> None:
    def batches() -> object:
        for start in range(0, 50, 8):  # the last batch is short, as a file's last lines are
            ids = np.arange(start, min(start + 8, 50))
            yield {"x": np.stack([ids, ids * 0], 1).astype(np.float32)}, ids[:, None].astype(np.float32)

    loader = chute.from_generator(batches, batched=True).loader(workers=2)
    assert loader.batch_size == 8
    got = [(features["x"].shape, target[:, 0].tolist()) for features, target in loader]
    assert got == [((len(b[1]), 2), b[1][:, 0].tolist()) for b in batches()]  # type: ignore[attr-defined]
    with pytest.raises(chute.SpecError, match=r"rows of shape \(2,\) for field '0/x' in batch 1"):

        def wrong() -> object:
            yield {"x": np.zeros((4, 2), np.float32)}, np.zeros((4, 1), np.float32)
            yield {"x": np.zeros((4, 3), np.float32)}, np.zeros((4, 1), np.float32)

        list(chute.from_generator(wrong, batched=True).loader())


@pytest.mark.parametrize("steps_per_epoch", [None, 3], ids=["whole-epochs", "steps_per_epoch"])
@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # (Keras: 3 + 2 + 3 steps of 5 batches)
def test_a_generator_is_trained_in_its_order_whatever_fit_shuffle_says(steps_per_epoch: object) -> None:
    """Keras asks for batches by shuffled number, and reads one early to build the model: a
    generator's batches still reach the model in the generator's order, none twice or skipped."""
    x, y = id_data(40)

    def samples() -> object:
        yield from zip(x, y, strict=True)

    seen: list[list[int]] = []
    model = keras.Sequential([Record(seen), keras.layers.Dense(1)])  # unbuilt: Keras peeks to build it
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    loader = chute.from_generator(samples, length=40).loader(8)
    keras.utils.set_random_seed(2)
    model.fit(loader.keras(), epochs=3, shuffle=True, steps_per_epoch=steps_per_epoch, verbose=0)
    trained = [i for batch in seen for i in batch]
    steps = 8 if steps_per_epoch else 15
    assert trained == [i % 40 for i in range(steps * 8)]
    handed = loader.epoch * 5 + loader.step  # (tf.data reads one batch ahead of the model)
    assert handed == steps + (keras.backend.backend() == "tensorflow" and steps_per_epoch is not None)


# -- chute.keras.BackupAndRestore: a run stopped anywhere resumes to the uninterrupted run --
class Stopped(Exception):
    """Stands for the process being killed: raised from a callback, it ends fit at that point."""


class StopAt(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises :class:`Stopped` at the ``at``-th event of a fit: batch ends, validation and epoch ends."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.events = at, []  # type: ignore[var-annotated]

    def _event(self, name: str) -> None:
        self.events.append(name)
        if len(self.events) == self.at:
            raise Stopped(name)

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        self._event("batch end")

    def on_test_begin(self, logs: object = None) -> None:
        self._event("validation")

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        self._event("epoch end")


def id_model(seen: list[list[int]]) -> object:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), Record(seen), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    return model


def backed_up_fit(
    data: tuple[object, object], backup: str | None, stop: StopAt | None, before_backup: bool, **fit: object
) -> tuple[list[list[int]], list[np.ndarray], bool]:
    """One fit (a fresh process's: new loader, model and callbacks) with ids recorded as trained;
    whether it was stopped.  The stop callback runs after the backup's, or before it."""
    import chute.keras

    make_loader, make_model = data
    seen: list[list[int]] = []
    model = make_model(seen)  # type: ignore[operator]
    loader = make_loader()  # type: ignore[operator]
    callbacks: list[object] = []
    if backup is not None:
        callbacks.append(chute.keras.BackupAndRestore(loader, backup, save_freq=1))
    if stop is not None:
        callbacks.insert(0 if before_backup else len(callbacks), stop)
    try:
        model.fit(loader.keras(), callbacks=callbacks, shuffle=False, verbose=0, **fit)
    except Stopped:
        return seen, model.get_weights(), True
    return seen, model.get_weights(), False


def resumes_from_every_stop_point(data: tuple[object, object], backups: str, **fit: object) -> int:
    """Stops the fit at each of its events in turn (and at each epoch end before the backup
    callback saw it), runs it again, and checks the batches trained over both runs are the
    uninterrupted run's (none twice, none lost) and the weights the same.  The steps trained."""
    full, weights, _ = backed_up_fit(data, None, None, False, **fit)
    events = StopAt(0)
    backed_up_fit(data, None, events, False, **fit)
    stops = [(at, False) for at in range(1, len(events.events) + 1)]
    stops += [(at, True) for at, name in enumerate(events.events, 1) if name == "epoch end"]
    for at, before_backup in stops:
        backup = f"{backups}/backup-{at}-{before_backup}"
        stop = StopAt(at)
        first, _, stopped = backed_up_fit(data, backup, stop, before_backup, **fit)
        assert stopped
        second, resumed, stopped = backed_up_fit(data, backup, None, False, **fit)
        assert not stopped
        where = f"stopped at event {at} ({stop.events[-1]}{', before the backup' if before_backup else ''})"
        assert first + second == full, where
        for mine, theirs in zip(resumed, weights, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-6, err_msg=where)
    return len(full)


@pytest.mark.parametrize("steps_per_epoch", [None, 2], ids=["whole-epochs", "steps_per_epoch"])
@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # (Keras: epochs of 2, 1, 2 steps)
def test_backup_and_restore_resumes_exactly_from_every_stop_point(
    tmp_path: object, steps_per_epoch: object
) -> None:
    """Each batch end, validation, each epoch end (before and after the backup callback saw it);
    restores that leave one batch of the epoch (which TensorFlow's shape peek used to keep)."""

    def make_loader() -> chute.Loader:
        return chute.from_arrays(*id_data(24)).loader(8, shuffle=True, seed=4)  # 3 batches

    validation = chute.from_arrays(*id_data(8)).loader(4).keras()
    fit = {"epochs": 3, "steps_per_epoch": steps_per_epoch, "validation_data": validation}
    steps = resumes_from_every_stop_point((make_loader, id_model), str(tmp_path), **fit)
    assert steps == (5 if steps_per_epoch else 9)  # (Keras: epochs of 2, 1 and 2 steps)


def test_the_tutorial_generator_resumes_exactly_from_every_stop_point(tmp_path: object) -> None:
    import functools

    path = f"{tmp_path}/my_file.txt"
    with open(path, "w") as f:
        f.writelines(f"{i} {i / 2} {i % 3}\n" for i in range(7))

    def make_loader() -> chute.Loader:
        return chute.from_generator(functools.partial(generate_arrays_from_file, path), batched=True).loader()

    steps = resumes_from_every_stop_point(
        (make_loader, tutorial_model), str(tmp_path), steps_per_epoch=3, epochs=3
    )
    assert steps == 9
