"""Rollouts on Ray: the same training as local, bit for bit, and every fault handled.

All on one two-node Ray cluster emulated on this machine (ray.cluster_utils.Cluster: a
head with 2 CPUs and a second node with 1). Skipped when Ray is not installed
(pip install 'policygrad[ray]').
"""

import time

import pytest
import ray_helpers  # noqa: F401 - sets Ray's environment variables before Ray is imported

ray = pytest.importorskip("ray")

from ray import cloudpickle  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from ray_helpers import assert_same_run, config, register_faulty, train  # noqa: E402

from policygrad.distributed.ray_backend import RayCollector  # noqa: E402
from policygrad.errors import PolicygradError  # noqa: E402
from policygrad.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.timeout(180)  # hard limit per test: a misconfigured Ray fails, never hangs
cloudpickle.register_pickle_by_value(ray_helpers)  # the workers cannot import the tests' modules
NODE = dict(object_store_memory=80 * 1024**2)
# Notice a lost node within about a second instead of Ray's default quarter of a minute; workers at the
# tests' own priority (Ray's default niceness 15 starves them when the machine is busy).
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 2, "worker_niceness": 0}


@pytest.fixture(scope="module", autouse=True)
def cluster():
    head = dict(NODE, num_cpus=2, include_dashboard=False, _system_config=SYSTEM_CONFIG)
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=head)
    cluster.second = cluster.add_node(num_cpus=1, **NODE)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def local_a2c(tmp_path_factory):
    path = tmp_path_factory.mktemp("local") / "a2c"
    train(path, checkpoint_every=4)
    return path


def test_ray_equals_local_with_one_worker_and_with_three_on_two_nodes(tmp_path, local_a2c):
    # 2 workers: the fault tests below compare their runs with local too.
    trainer = train(tmp_path / "ray1", backend="ray", workers=1, checkpoint_every=4)
    assert_same_run(local_a2c, tmp_path / "ray1")
    # One CPU each: three workers fit only on both nodes together (2 + 1 CPUs), whatever Ray's placement.
    trainer = train(tmp_path / "ray3", backend="ray", workers=3, worker_cpus=1, checkpoint_every=4)
    assert [len(shard) for shard in trainer.collector.shards] == [3, 3, 2]
    assert len(set(trainer.collector.worker_nodes)) == 2
    assert_same_run(local_a2c, tmp_path / "ray3")


def test_episode_mode_equals_local(tmp_path):
    train(tmp_path / "local", algo="reinforce", total_steps=1500)
    train(tmp_path / "ray", algo="reinforce", total_steps=1500, backend="ray", workers=2)
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_env_exception_names_worker_env_index_and_error(tmp_path):
    env_id = register_faulty("policygrad-test/RaisesInEnv5-v0", ("raise", 5, 7, None))
    with pytest.raises(PolicygradError) as err:
        train(tmp_path / "run", env_id=env_id, backend="ray", workers=2)
    assert str(err.value) == "rollout worker 1 (envs 4-7): env 5 raised ValueError in step(): boom at step 7"


def _hang_then_crash(name, tmp_path):
    # Env 0 hangs at its 12th step (update 3), env 5 kills its worker at its 50th step (update 10); once each.
    faults = ("hang", 0, 12, tmp_path / "hang"), ("crash", 5, 50, tmp_path / "crash")
    return register_faulty(f"policygrad-test/{name}-v0", *faults)


@pytest.mark.slow
def test_hung_then_crashed_worker_stop_training_and_the_last_checkpoint_resumes_exactly(tmp_path, local_a2c):
    env_id, run = _hang_then_crash("HangThenCrash", tmp_path), tmp_path / "run"
    hung = r"rollout worker 0 \(envs 0-3\) did not return its rollout within 1\.5 s \(--rollout-timeout\)"
    with pytest.raises(PolicygradError, match=hung):
        train(run, env_id=env_id, backend="ray", workers=2, rollout_timeout=1.5, checkpoint_every=2)
    assert (tmp_path / "hang").exists() and not (tmp_path / "crash").exists()
    start = time.monotonic()
    # The faulty env is the test's own class, saved as a pickle: this folder is the test's own, so it is trusted.
    with pytest.raises(PolicygradError, match=r"rollout worker 1 \(envs 4-7\) died .*--max-worker-restarts K"):
        Trainer.resume(run, quiet=True, trust_run_folder=True).run()
    assert time.monotonic() - start < 60  # it fails fast: no waiting for a timeout
    assert (tmp_path / "crash").exists()
    Trainer.resume(run, quiet=True, trust_run_folder=True).run()
    assert_same_run(local_a2c, run)


@pytest.mark.slow
def test_hung_and_crashed_workers_are_recreated_and_the_batch_collected_again(tmp_path, local_a2c):
    env_id, run = _hang_then_crash("HangThenCrashRestarted", tmp_path), tmp_path / "run"
    trainer = train(
        run, env_id=env_id, backend="ray", workers=2, checkpoint_every=4, rollout_timeout=1.5, max_worker_restarts=1
    )
    assert trainer.collector.restarts == [1, 1] and (tmp_path / "crash").exists()
    assert_same_run(local_a2c, run)


#: A small LSTM policy (policy=lstm): the workers carry its state from rollout to rollout.
LSTM = dict(policy="lstm", lstm_hidden_size=8, hidden_sizes=(16,))


def test_lstm_a2c_on_ray_equals_local(tmp_path):
    train(tmp_path / "local", **LSTM)
    train(tmp_path / "ray", backend="ray", workers=3, worker_cpus=1, **LSTM)
    assert_same_run(tmp_path / "local", tmp_path / "ray")


def test_lstm_ppo_on_ray_stopped_and_resumed_equals_local(tmp_path):
    # Sequence minibatches of 4 envs' 5 steps. The run stops at update 10 and resumes from its checkpoint at
    # update 8 on fresh workers, which continue their episodes with the LSTM state the checkpoint holds.
    settings = dict(LSTM, minibatch_size=20, update_epochs=2, checkpoint_every=4)
    train(tmp_path / "local", "ppo", **settings)

    class Stopped(Exception):
        pass

    def stop_at_update_10(row):
        if row["update"] == 10:
            raise Stopped

    run = tmp_path / "ray"
    with pytest.raises(Stopped):
        Trainer.new("ppo", config("ppo", backend="ray", workers=2, **settings), run, quiet=True).run(stop_at_update_10)
    Trainer.resume(run, quiet=True).run()
    assert_same_run(tmp_path / "local", run)


@pytest.mark.slow
def test_a_recreated_lstm_worker_continues_from_the_state_before_the_batch(tmp_path):
    # Env 5 kills its worker at its 50th step (update 10): the new worker gets its envs and LSTM states back.
    env_id = register_faulty("policygrad-test/CrashesWithLSTM-v0", ("crash", 5, 50, tmp_path / "crash"))
    train(tmp_path / "local", **LSTM)
    trainer = train(tmp_path / "ray", env_id=env_id, backend="ray", workers=2, max_worker_restarts=1, **LSTM)
    assert trainer.collector.restarts == [0, 1]
    assert_same_run(tmp_path / "local", tmp_path / "ray")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(workers=4), r"--workers 4 x --worker-cpus 1 needs 4 CPUs but the Ray cluster has 3"),
        (dict(workers=1, worker_cpus=3), r"--worker-cpus 3 is more than any node of the Ray cluster has \(2 CPUs\)"),
        (dict(workers=9), r"--workers 9 needs at least as many environments \(num_envs = 8\)"),
        (dict(normalize_obs=True), r"does not support normalize_obs"),
    ],
)
def test_impossible_requests_are_refused_up_front(overrides, message):
    cfg = config(backend="ray", **overrides)
    from policygrad.agent import Agent, AgentSpec

    agent = Agent(AgentSpec(obs_dim=4, discrete=True, action_dim=2, hidden_sizes=(8,), activation="tanh", critic=True))
    with pytest.raises(PolicygradError, match=message):
        RayCollector(agent, cfg)


def test_lost_node_is_a_crashed_worker_recreated_elsewhere(cluster, local_a2c, tmp_path):
    # Last in this file: the cluster has one node less afterwards.
    cfg = config(backend="ray", workers=2, max_worker_restarts=1, checkpoint_every=4)
    trainer = Trainer.new("a2c", cfg, tmp_path / "ray", quiet=True)
    second = cluster.second.node_id
    assert second in trainer.collector.worker_nodes

    def remove_second_node(row):
        """Between updates 3 and 4, lose the node, and wait until Ray knows it is gone.

        Otherwise Ray may place the replacement on the node it still believes alive (it notices
        a lost node by missed health checks), and the test would measure that race, not policygrad.
        """
        if row["update"] != 3:
            return
        cluster.remove_node(cluster.second)
        deadline = time.monotonic() + 60
        while any(node["NodeID"] == second and node["Alive"] for node in ray.nodes()):
            assert time.monotonic() < deadline, "Ray did not notice the lost node within a minute"
            time.sleep(0.05)

    trainer.run(remove_second_node)
    assert second not in trainer.collector.worker_nodes and sorted(trainer.collector.restarts) == [0, 1]
    assert_same_run(local_a2c, tmp_path / "ray")
