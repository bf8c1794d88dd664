"""fit / evaluate / predict: Keras's semantics, one compile, and the fast path equal to a plain loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, assert_trees_equal, random_data

from jaxmlp import inputs, model, optim, train
from jaxmlp.data import to_categorical


def counting(optimizer):
    """The optimizer, plus a list that grows by one each time its update is traced."""
    traces = []

    def update(grads, state, params=None):
        traces.append(1)
        return optimizer.update(grads, state, params)

    return optim.GradientTransformation(optimizer.init, update), traces


def test_short_training_on_real_mnist_improves_accuracy(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    params = model.init_mlp(jax.random.key(0), (784, 64, 10))
    before = train.evaluate(params, x_test[:2000], y_test[:2000])
    state, history = train.fit(params, x_train[:6000], y_train[:6000], epochs=2, batch_size=128)
    after = train.evaluate(state.params, x_test[:2000], y_test[:2000])
    assert before["accuracy"] < 0.3
    assert after["accuracy"] > 0.8  # 0.8575 measured: 94 steps of RMSProp
    assert after["loss"] < before["loss"] / 3
    assert history.metrics["loss"][1] < history.metrics["loss"][0]


def test_an_epoch_with_a_partial_batch_compiles_once():
    x, y = random_data(1000)  # 7 batches of 128 and one of 104
    optimizer, traces = counting(optim.rmsprop())
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    train.fit(params, x, y, optimizer=optimizer, epochs=3, batch_size=128, validation_split=0.1)
    assert len(traces) == 1
    train.fit(params, x, y, optimizer=optimizer, epochs=2, batch_size=128, validation_split=0.1)
    assert len(traces) == 1  # same configuration, same shapes: the compiled program is reused
    train.fit(params, x, y, optimizer=optimizer, epochs=1, batch_size=100, validation_split=0.1)
    assert len(traces) == 2  # a new batch size is a new program


def reference_epoch(params, opt_state, optimizer, x, y, order, batch_size):
    """The textbook loop: for each batch of `order`, its *real* rows only, grad of the mean loss, update."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        inputs = jnp.asarray(x[rows], jnp.float64) / 255
        logits = model.apply(params, inputs)
        loss_sum += float(jnp.sum(model.cross_entropy(logits, jnp.asarray(y[rows]))))
        correct += int(jnp.sum(jnp.argmax(logits, axis=-1) == jnp.asarray(y[rows])))
        grads = jax.grad(model.loss)(params, inputs, jnp.asarray(y[rows]))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optim.apply_updates(params, updates)
    return params, loss_sum / len(order), correct / len(order)


@pytest.mark.parametrize(
    "optimizer", [optim.sgd(0.1, momentum=0.9), optim.rmsprop(), optim.adam(1e-3)], ids=["momentum", "rmsprop", "adam"]
)
def test_compiled_epoch_equals_a_plain_loop_over_real_rows(optimizer):
    """The scan, the gather, the padding and the mask change nothing: float64, rtol 1e-10."""
    x, y = random_data(300, features=20)  # batches of 64: 4 full and one of 44
    with jax.enable_x64(True):
        params = model.init_mlp(jax.random.key(1), (20, 8, 10), dtype=jnp.float64)
        state = train.init_train_state(params, optimizer, jax.random.key(7))
        order = np.asarray(jax.random.permutation(jax.random.split(jax.random.key(7))[1], 300))  # the epoch's shuffle
        new_state, sums = train.train_epoch(state, jnp.asarray(x), jnp.asarray(y), optimizer=optimizer, batch_size=64)
        expected, loss, accuracy = reference_epoch(params, optimizer.init(params), optimizer, x, y, order, 64)
        assert_trees_close(new_state.params, expected, rtol=1e-10, atol=1e-12)
        assert float(sums[0]) / 300 == pytest.approx(loss, rel=1e-10)
        assert float(sums[1]) / 300 == accuracy
        next_key = jax.random.key_data(new_state.key)  # the next epoch shuffles differently
        assert not np.array_equal(next_key, jax.random.key_data(jax.random.key(7)))


def test_evaluate_counts_every_sample():
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    x, y = random_data(1001)
    logits = model.apply(params, jnp.asarray(x, jnp.float32) / 255)
    labels = np.array(jnp.argmax(logits, axis=-1))
    labels[-1] = (labels[-1] + 1) % 10  # only the very last sample is wrong
    result = train.evaluate(params, x, labels)  # batches of 1000: the 1001st sample is in a padded batch
    assert result["accuracy"] == 1000 / 1001
    expected_loss = float(jnp.mean(model.cross_entropy(logits, jnp.asarray(labels))))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert train.evaluate(params, x, labels, batch_size=7) == pytest.approx(result, rel=1e-5)


def test_evaluate_covers_the_whole_real_test_set(mnist):
    _, (x_test, y_test) = mnist
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    predicted = train.predict_classes(params, x_test)
    assert predicted.shape == (10_000,)
    expected = np.mean(predicted == y_test)
    assert train.evaluate(params, x_test, y_test, batch_size=128)["accuracy"] == expected  # 78 x 128 + 16


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x, y = np.arange(60_000).reshape(-1, 1), np.arange(60_000)
    (x_train, y_train), (x_val, y_val) = inputs.split_validation(x, y, 0.2)
    assert len(x_train) == 48_000 and len(x_val) == 12_000
    assert y_val[0] == 48_000 and y_val[-1] == 59_999
    x, y = random_data(500)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    _, split = train.fit(params, x, y, epochs=2, batch_size=32, validation_split=0.2)
    _, explicit = train.fit(params, x[:400], y[:400], epochs=2, batch_size=32, validation_data=(x[400:], y[400:]))
    assert split.metrics == explicit.metrics
    assert set(split.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_fit_is_deterministic_and_reshuffles_each_epoch():
    x, y = random_data(256)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))

    def run(key):
        return train.fit(params, x, y, epochs=2, batch_size=64, key=key)[0].params

    same_a, same_b, other = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    assert_trees_equal(same_a, same_b)
    assert not np.allclose(same_a[0]["w"], other[0]["w"])


def test_one_hot_and_integer_labels_train_alike_and_images_may_be_28x28():
    x, y = random_data(200)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    sparse, _ = train.fit(params, x, y, epochs=1, batch_size=50)
    dense, _ = train.fit(params, x.reshape(200, 28, 28), to_categorical(y, 10), epochs=1, batch_size=50)
    assert_trees_close(sparse.params, dense.params, rtol=1e-5, atol=1e-7)


def test_fit_leaves_the_callers_parameters_usable():
    x, y = random_data(64)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    before = np.asarray(params[0]["w"]).copy()
    state, _ = train.fit(params, x, y, epochs=1, batch_size=32)  # training donates its own copies
    np.testing.assert_array_equal(params[0]["w"], before)
    assert not np.allclose(state.params[0]["w"], before)


def test_fit_accepts_any_optax_optimizer_and_continues_from_a_state():
    x, y = random_data(256)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    ours, _ = train.fit(params, x, y, optimizer=optim.adam(1e-3), epochs=2, batch_size=64)
    theirs, _ = train.fit(params, x, y, optimizer=optax.adam(1e-3), epochs=2, batch_size=64)
    named, _ = train.fit(params, x, y, optimizer="adam", epochs=2, batch_size=64)  # as Keras's compile(optimizer=)
    assert_trees_close(ours.params, theirs.params, rtol=1e-5, atol=1e-7)
    assert_trees_equal(ours.params, named.params)
    chained = optax.chain(optax.clip_by_global_norm(1.0), optim.rmsprop())
    half, _ = train.fit(params, x, y, optimizer=chained, epochs=1, batch_size=64)
    resumed, history = train.fit(half, x, y, optimizer=chained, epochs=1, batch_size=64)
    whole, _ = train.fit(params, x, y, optimizer=chained, epochs=2, batch_size=64)
    assert_trees_equal(resumed.params, whole.params)


def test_epoch_callback_and_verbose_line(capsys):
    x, y = random_data(100)
    seen = []
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    _, history = train.fit(
        params,
        x,
        y,
        epochs=2,
        batch_size=32,
        validation_split=0.2,
        verbose=True,
        on_epoch_end=lambda epoch, logs, state: seen.append((epoch, sorted(logs))),
    )
    assert seen == [(e, ["accuracy", "loss", "seconds", "val_accuracy", "val_loss"]) for e in (1, 2)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Epoch 1/2 - ") and " - loss: " in lines[0] and " - val_accuracy: " in lines[0]
    assert len(history.seconds) == 2 and history.compile_seconds > 0


def test_predict_gives_probabilities_and_classes():
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    x, _ = random_data(25)
    probabilities = train.predict(params, x, batch_size=10)
    assert probabilities.shape == (25, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    logits = model.apply(params, jnp.asarray(x, jnp.float32) / 255)
    np.testing.assert_array_equal(train.predict_classes(params, x, batch_size=10), np.argmax(logits, axis=1))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be > 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"epochs": -1}, ValueError, "epochs must be >= 0"),
        ({"validation_split": 1.0}, ValueError, r"validation_split must be in \[0, 1\)"),
        ({"validation_split": -0.1}, ValueError, r"validation_split must be in \[0, 1\)"),
        ({"validation_split": 1e-20}, ValueError, "leaves an empty"),  # 1 - 1e-20 rounds to 1: no validation
    ],
)
def test_fit_rejects_bad_arguments(kwargs, error, message):
    x, y = random_data(100)
    with pytest.raises(error, match=message):
        train.fit(model.init_mlp(jax.random.key(0), (784, 8, 10)), x, y, **kwargs)


def test_fit_rejects_mismatched_data():
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    x, y = random_data(100)
    with pytest.raises(ValueError, match="100 inputs but 99 targets"):
        train.fit(params, x, y[:99])
    with pytest.raises(ValueError, match="inputs have 20 features; the first layer expects 784"):
        train.fit(params, x[:, :20], y)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9; got \d\.\.10"):
        train.fit(params, x, np.where(y == 0, 10, y))
    with pytest.raises(ValueError, match="labels must be integers 0..9"):
        train.fit(params, x, y + 0.5)
    with pytest.raises(ValueError, match="inputs must be finite numbers"):
        train.fit(params, np.full((100, 784), np.nan, np.float32), y)
    with pytest.raises(ValueError, match="targets have 9 columns; the last layer has 10 classes"):
        train.fit(params, x, np.eye(9)[y % 9])
    with pytest.raises(ValueError, match="evaluation data: labels must be in 0..9"):
        train.evaluate(params, x, y - 1)
    with pytest.raises(ValueError, match="a TrainState and a key"):
        train.fit(train.init_train_state(params, optim.sgd(0.1), jax.random.key(0)), x, y, key=jax.random.key(1))


def test_validation_and_evaluation_compile_once(monkeypatch):
    jax.clear_caches()  # programs of the same shapes that other tests compiled would hide the count
    traced = []
    apply = model.apply
    monkeypatch.setattr(model, "apply", lambda params, x, **kw: (traced.append(x.shape), apply(params, x, **kw))[1])
    x, y = random_data(1000)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    train.fit(params, x, y, epochs=3, batch_size=128, validation_split=0.2)
    assert len(traced) == 2  # one program for three epochs: apply traced once for training, once for validation
    train.evaluate(params, x[:300], y[:300])
    train.evaluate(params, x[300:600], y[300:600])  # same shapes: the compiled program is reused
    assert len(traced) == 3


def test_nothing_in_the_library_names_a_platform():
    """The same code must run on CPU, GPU and TPU: no device kind is spelled out anywhere in jaxmlp/."""
    import re
    from pathlib import Path

    source = "\n".join(p.read_text() for p in Path(train.__file__).parent.glob("*.py"))
    assert not re.search(r"""["'](cpu|gpu|cuda|rocm|tpu)["']""", source, re.IGNORECASE)
    assert "jax.devices(" not in source.replace("jax.devices()", "")  # never a backend argument


def test_fit_validates_the_evaluation_parameters_of_a_schedule_free_optimizer():
    """Schedule-free trains at y but answers with x: fit's val_* are x's, and x is not y."""
    x, y = random_data(800)
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    optimizer = optim.schedule_free_adamw(3e-3, warmup_steps=5)
    state, history = train.fit(params, x, y, optimizer=optimizer, epochs=2, batch_size=64, validation_split=0.25)
    x_val, y_val = x[600:], y[600:]
    at_x = train.evaluate(train.evaluation_params(state, optimizer), x_val, y_val)
    at_y = train.evaluate(state.params, x_val, y_val)
    assert history.metrics["val_loss"][-1] == pytest.approx(at_x["loss"], rel=1e-6)
    assert history.metrics["val_accuracy"][-1] == pytest.approx(at_x["accuracy"], abs=1e-9)
    assert abs(at_y["loss"] - at_x["loss"]) > 1e-4  # the two points really differ
    by_name = train.evaluation_params(state, "schedule_free_adamw")  # b1 = 0.9 either way
    assert_trees_equal(by_name, optimizer.eval_params(state.opt_state, state.params))
    assert_trees_close(by_name, optim.schedule_free_eval_params(state.opt_state, state.params), rtol=1e-6, atol=1e-9)
    plain = train.TrainState(params, optim.adam(1e-3).init(params), jax.random.key(0))
    assert train.evaluation_params(plain, optim.adam(1e-3)) is plain.params  # the others answer at their params
