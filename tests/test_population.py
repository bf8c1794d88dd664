"""Populations: many networks trained at once with vmap, each member as fit would train it alone."""

import re

import jax
import pytest
from helpers import assert_trees_close, assert_trees_equal, random_data

from jaxmlp import checkpoint, model, optim, population, train
from jaxmlp.population import member
from jaxmlp.regularize import Regularization


def test_each_member_trains_as_fit_would_train_it_alone():
    x, y = random_data(600)
    keys = jax.random.split(jax.random.key(3), 3)
    params = population.init_population(jax.random.split(jax.random.key(0), 3), (784, 16, 10))
    rates = [3e-3, 1e-2, 3e-2]
    states, histories = population.fit_population(
        params,
        x,
        y,
        optimizer_factory=optim.sgd,
        hyperparams={"learning_rate": rates, "momentum": [0.9, 0.5, 0.0]},
        keys=keys,
        epochs=2,
        batch_size=64,
        validation_split=0.2,
    )
    for i, (lr, momentum) in enumerate(zip(rates, [0.9, 0.5, 0.0])):
        optimizer = optim.sgd(lr, momentum=momentum)
        alone, history = train.fit(
            train.init_train_state(member(params, i), optimizer, keys[i]),
            x,
            y,
            optimizer=optimizer,
            epochs=2,
            batch_size=64,
            validation_split=0.2,
        )
        assert_trees_close(member(states.params, i), alone.params, rtol=1e-5, atol=1e-6)
        assert histories[i].metrics["val_accuracy"] == pytest.approx(history.metrics["val_accuracy"], abs=1e-9)
        assert histories[i].metrics["loss"] == pytest.approx(history.metrics["loss"], rel=1e-5)
    tests = population.evaluate_population(states.params, x, y)
    assert [t["accuracy"] for t in tests] == [
        train.evaluate(member(states.params, i), x, y)["accuracy"] for i in range(3)
    ]


def test_a_grid_of_learning_rates_compiles_once(monkeypatch):
    jax.clear_caches()  # programs of the same shapes that other tests compiled would hide the count
    traced = []
    apply = model.apply
    monkeypatch.setattr(model, "apply", lambda params, x, **kw: (traced.append(1), apply(params, x, **kw))[1])
    x, y = random_data(300)
    params = population.init_population(jax.random.split(jax.random.key(0), 4), (784, 8, 10))
    for rates in ([1e-3, 3e-3, 1e-2, 3e-2], [1e-4, 2e-4, 5e-4, 7e-4]):
        population.fit_population(
            params,
            x,
            y,
            optimizer_factory=optim.rmsprop,
            hyperparams={"learning_rate": rates},
            epochs=2,
            batch_size=50,
            validation_split=0.2,
        )
    assert len(traced) == 2  # one program (training and validation) for both grids


def test_population_rejects_mismatched_grids():
    x, y = random_data(100)
    params = population.init_population(jax.random.split(jax.random.key(0), 3), (784, 8, 10))
    with pytest.raises(ValueError, match="has 2 values for 3 members"):
        population.fit_population(
            params, x, y, optimizer_factory=optim.adam, hyperparams={"learning_rate": [1e-3, 1e-2]}
        )
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        population.fit_population(
            params, x, y, optimizer_factory=optim.adam, hyperparams={"learning_rate": [1e-3, 0, 1]}
        )
    with pytest.raises(ValueError, match="2 shuffling keys for 3 members"):
        population.fit_population(
            params,
            x,
            y,
            optimizer_factory=optim.adam,
            hyperparams={"learning_rate": [1e-3] * 3},
            keys=jax.random.split(jax.random.key(0), 2),
        )


def test_a_schedule_multiplies_every_members_learning_rate():
    x, y = random_data(200)
    keys = jax.random.split(jax.random.key(3), 2)
    params = population.init_population(jax.random.split(jax.random.key(0), 2), (784, 8, 10))
    halving = lambda count: 0.5 ** (count // 3)  # noqa: E731 - a schedule is any function of the step count
    states, _ = population.fit_population(
        params,
        x,
        y,
        optimizer_factory=optim.sgd,
        hyperparams={"learning_rate": [0.1, 0.4]},
        schedule=halving,
        keys=keys,
        epochs=2,
        batch_size=50,
    )
    for i, lr in enumerate([0.1, 0.4]):
        optimizer = optim.sgd(lambda count, lr=lr: lr * halving(count))
        alone, _ = train.fit(
            train.init_train_state(member(params, i), optimizer, keys[i]),
            x,
            y,
            optimizer=optimizer,
            epochs=2,
            batch_size=50,
        )
        assert_trees_close(member(states.params, i), alone.params, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        population.fit_population(
            params, x, y, optimizer_factory=optim.sgd, hyperparams={"learning_rate": [0.1, -1.0]}, schedule=halving
        )


def test_a_population_of_regularizations_trains_each_member_as_fit_does():
    x, y = random_data(400)
    keys = jax.random.split(jax.random.key(3), 3)
    params = population.init_population(jax.random.split(jax.random.key(0), 3), (784, 16, 10))
    members = [
        Regularization(dropout=d, label_smoothing=s, l2=1e-4, max_shift=m, max_rotation=r)
        for d, s, m, r in [(0.0, 0.0, 0.0, 0.0), (0.3, 0.1, 1.0, 5.0), (0.5, 0.2, 2.0, 10.0)]
    ]
    stacked = Regularization(*[[getattr(m, name) for m in members] for name in Regularization._fields])
    states, histories = population.fit_population(
        params,
        x,
        y,
        optimizer_factory=optim.adam,
        hyperparams={"learning_rate": [1e-3] * 3},
        keys=keys,
        epochs=2,
        batch_size=64,
        validation_split=0.2,
        regularization=stacked,
    )
    for i, regularization in enumerate(members):
        alone, history = train.fit(
            train.init_train_state(member(params, i), optim.adam(1e-3), keys[i]),
            x,
            y,
            optimizer=optim.adam(1e-3),
            epochs=2,
            batch_size=64,
            validation_split=0.2,
            regularization=regularization,
        )
        assert_trees_close(member(states.params, i), alone.params, rtol=1e-5, atol=1e-6)
        assert histories[i].metrics["loss"] == pytest.approx(history.metrics["loss"], rel=1e-5)


# --------------------------------------------------------------------------- divergence, progress, checkpoints


def grid(rates, folder=None, epochs=3, **options):
    """A population of len(rates) RMSProp members on 500 noise images, one learning rate each."""
    x, y = random_data(500)
    size = len(rates)
    return population.fit_population(
        population.init_population(jax.random.split(jax.random.key(0), size), (784, 16, 10)),
        x,
        y,
        optimizer_factory=optim.rmsprop,
        hyperparams={"learning_rate": rates},
        keys=jax.random.split(jax.random.key(7), size),
        epochs=epochs,
        batch_size=50,
        validation_split=0.2,
        checkpoint_dir=folder,
        **options,
    )


def test_a_diverged_member_is_flagged_keeps_its_last_finite_state_and_harms_no_one(monkeypatch):
    jax.clear_caches()
    traced = []
    apply = model.apply
    monkeypatch.setattr(model, "apply", lambda params, x, **kw: (traced.append(1), apply(params, x, **kw))[1])
    states, histories = grid([1e-3, 1e30, 3e-3, 1e-4])
    assert len(traced) == 2  # one program (training and validation): divergence costs no second compile
    sane, sane_histories = grid([1e-3, 2e-3, 3e-3, 1e-4])
    assert [h.diverged_at_epoch for h in histories] == [None, 1, None, None]
    assert histories[1].metrics == {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    for i in (0, 2, 3):  # every other member exactly as without the diverging one
        assert_trees_equal(member(states, i), member(sane, i))
        assert histories[i].metrics == sane_histories[i].metrics
    initial = population.init_population(jax.random.split(jax.random.key(0), 4), (784, 16, 10))
    assert_trees_equal(member(states.params, 1), member(initial, 1))  # its last finite state: the initial one


def test_verbose_lines_and_callbacks_report_every_member(capsys):
    seen = []
    grid([1e-3, 1e30], epochs=2, verbose=True, on_epoch_end=lambda epoch, logs, states: seen.append((epoch, logs)))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    one_left = r"Epoch 1/2 - \d+\.\d\ds - val_accuracy best (0\.\d{4}), median \1, worst \1 - diverged 1 of 2"
    assert re.fullmatch(one_left, lines[0])
    assert [epoch for epoch, _ in seen] == [1, 2]
    logs = seen[0][1]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert logs["loss"][1] is None and logs["val_accuracy"][1] is None and 0 <= logs["val_accuracy"][0] <= 1


def test_a_population_where_every_member_diverges_stops_there():
    _, histories = grid([1e30, 1e31], epochs=5)
    assert [h.diverged_at_epoch for h in histories] == [1, 1]


def test_a_population_resumes_from_its_checkpoints_bitwise_diverged_members_included(tmp_path):
    rates = [1e-3, 1e30, 3e-3]
    whole, whole_histories = grid(rates, epochs=4)

    def crash(epoch, logs, states):
        if epoch == 2:
            raise KeyboardInterrupt  # stands for a kill after epoch 2's checkpoint

    with pytest.raises(KeyboardInterrupt):
        grid(rates, tmp_path, epochs=4, on_epoch_end=crash)
    resumed, histories = grid(rates, tmp_path, epochs=4)
    assert_trees_equal(resumed, whole)
    assert [h.metrics for h in histories] == [h.metrics for h in whole_histories]
    assert [h.diverged_at_epoch for h in histories] == [None, 1, None]


def test_a_population_checkpoint_refuses_another_size_or_grid(tmp_path):
    grid([1e-3, 3e-3, 1e-2], tmp_path, epochs=1)
    with pytest.raises(checkpoint.ConfigurationMismatch, match="members: 3 there, 2 now"):
        grid([1e-3, 3e-3], tmp_path, epochs=1)
    grids = '{"learning_rate": [0.001, 0.003, 0.01]} there, {"learning_rate": [0.001, 0.003, 0.02]} now'
    message = re.escape(f"hyperparams: {grids}")
    with pytest.raises(checkpoint.ConfigurationMismatch, match=message):
        grid([1e-3, 3e-3, 2e-2], tmp_path, epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00001.npz"]


@pytest.mark.parametrize(
    "factory, hyperparams",
    [
        (optim.schedule_free_adamw, {"learning_rate": [3e-3, 1e-2], "b1": [0.9, 0.7]}),
        (optim.lion, {"learning_rate": [1e-4, 3e-4], "weight_decay": [0.0, 0.1]}),
        (optim.muon, {"learning_rate": [3e-3, 1e-2]}),
    ],
    ids=["schedule_free_adamw", "lion", "muon"],
)
def test_the_new_families_train_each_member_as_fit_does(factory, hyperparams):
    """Each member as fit trains it alone, validated and evaluated at its evaluation parameters."""
    x, y = random_data(400)
    keys = jax.random.split(jax.random.key(3), 2)
    params = population.init_population(jax.random.split(jax.random.key(0), 2), (784, 16, 10))
    options = {"epochs": 2, "batch_size": 64, "validation_split": 0.25}
    states, histories = population.fit_population(
        params, x, y, optimizer_factory=factory, hyperparams=hyperparams, keys=keys, **options
    )
    evaluated = population.evaluation_params(states, factory)
    for i in range(2):
        optimizer = factory(**{name: values[i] for name, values in hyperparams.items()})
        alone, history = train.fit(
            train.init_train_state(member(params, i), optimizer, keys[i]), x, y, optimizer=optimizer, **options
        )
        assert_trees_close(member(evaluated, i), train.evaluation_params(alone, optimizer), rtol=1e-4, atol=1e-5)
        assert histories[i].metrics["val_loss"] == pytest.approx(history.metrics["val_loss"], rel=1e-4)
    if factory is optim.schedule_free_adamw:  # each member keeps its own b1, and is evaluated at its own x
        assert [float(b1) for b1 in states.opt_state.inner_state.b1] == pytest.approx([0.9, 0.7])
        assert not jax.numpy.allclose(evaluated[0]["w"], states.params[0]["w"])
