"""Price catalog, cost meter and budgets: exact dollar arithmetic with injected time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ray_ml.config import CostConfig, NodeTypeConfig, Pricing, TuneConfig, load_config
from ray_ml.cost import Budget, CostMeter, PriceCatalog, TrialStatus
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit

EPS = 1e-12  # float round-off only: every expected figure below is exact in dollars


def _node(name: str, cpus: int, od: float, spot: float, **kw: object) -> NodeTypeConfig:
    return NodeTypeConfig(
        name=name,
        cpus=cpus,
        memory_gb=16.0,
        on_demand_usd_per_hour=od,
        spot_usd_per_hour=spot,
        prices_read_on="2026-11-26",
        **kw,  # type: ignore[arg-type]
    )


# cpu4: $0.10 per CPU-hour on demand, $0.04 spot. gpu1: the same 4 CPUs plus one T4, whose
# GPU-hour is what the node costs beyond them: 1.40 - 0.40 = $1.00, spot 0.56 - 0.16 = $0.40.
CPU4 = _node("cpu4", 4, 0.40, 0.16)
GPU1 = _node("gpu1", 4, 1.40, 0.56, gpus=1, gpu_type="T4", illustrative=False)


@pytest.fixture
def catalog() -> PriceCatalog:
    return PriceCatalog.from_config(CostConfig(node_types=[CPU4, GPU1], default_node_type="cpu4"))


@pytest.fixture
def meter(catalog: PriceCatalog) -> CostMeter:
    return CostMeter(catalog)


# ----------------------------------------------------------------------------------- catalog
def test_unit_prices_are_derived_from_node_prices(catalog: PriceCatalog) -> None:
    assert catalog.cpu_hour_price("on_demand") == pytest.approx(0.10, abs=EPS)
    assert catalog.cpu_hour_price(Pricing.spot) == pytest.approx(0.04, abs=EPS)
    assert catalog.gpu_hour_prices("on_demand") == pytest.approx({"T4": 1.00}, abs=EPS)
    assert catalog.gpu_hour_prices("spot") == pytest.approx({"T4": 0.40}, abs=EPS)
    units = catalog.node("gpu1").units("on_demand")
    assert units.cpu_usd_per_hour == pytest.approx(0.10, abs=EPS)
    assert units.gpu_usd_per_hour == pytest.approx(1.00, abs=EPS)


def test_price_of_a_bundle(catalog: PriceCatalog) -> None:
    assert catalog.price_of({"CPU": 2}, "on_demand") == pytest.approx(0.20, abs=EPS)
    assert catalog.price_of({"CPU": 2}, "spot") == pytest.approx(0.08, abs=EPS)
    assert catalog.price_of({"CPU": 0.5}) == pytest.approx(0.05, abs=EPS)  # fractions fine
    both = {"CPU": 2, "GPU": 1}
    assert catalog.price_of(both, "on_demand", "gpu1") == pytest.approx(1.20, abs=EPS)
    assert catalog.price_of(both, "spot", "gpu1") == pytest.approx(0.48, abs=EPS)
    # Memory and custom resources come with the machine.
    extra = {"CPU": 1, "memory": 1e9, "MOCK_GPU": 1, "accelerator_type:T4": 0.001}
    assert catalog.price_of(extra) == pytest.approx(0.10, abs=EPS)


def test_price_of_refuses_what_it_cannot_price(catalog: PriceCatalog) -> None:
    with pytest.raises(ConfigError, match=r"cost\.default_node_type.*'cpu4'.*gpu1"):
        catalog.price_of({"GPU": 1})
    with pytest.raises(ConfigError, match=r"CPU=-1"):
        catalog.price_of({"CPU": -1})
    with pytest.raises(ConfigError, match=r"'nope'.*cpu4, gpu1"):
        catalog.price_of({"CPU": 1}, node_type="nope")
    with pytest.raises(ConfigError, match=r"`cost\.pricing`.*reserved"):
        catalog.price_of({"CPU": 1}, "reserved")


def test_cpu_price_comes_from_cheapest_cpu_node_when_default_has_gpus() -> None:
    cheap = _node("cheap8", 8, 0.64, 0.24)  # $0.08 per CPU-hour, cheaper than cpu4
    cat = PriceCatalog([CPU4, cheap, GPU1], default_node_type="gpu1")
    assert cat.cpu_hour_price("on_demand") == pytest.approx(0.08, abs=EPS)
    assert cat.describe()["cpu_price_from"] == {"on_demand": "cheap8", "spot": "cheap8"}
    # GPU1 = 4 CPUs at 0.08 + its GPU.
    assert cat.gpu_hour_prices("on_demand")["T4"] == pytest.approx(1.40 - 0.32, abs=EPS)
    # A CPU-only node type keeps its own per-CPU price.
    assert cat.price_of({"CPU": 1}, node_type="cpu4") == pytest.approx(0.10, abs=EPS)
    # With no node type given, the default (a GPU node) prices CPUs at the reference.
    assert cat.price_of({"CPU": 1}) == pytest.approx(0.08, abs=EPS)


def test_gpu_price_is_floored_and_gpu_only_catalogs_warn() -> None:
    pricey = _node("pricey", 4, 4.0, 4.0)  # $1 per CPU-hour, more than gpu1's CPUs are worth
    cat = PriceCatalog([pricey, GPU1], default_node_type="pricey")
    assert cat.gpu_hour_prices("on_demand") == {"T4": 0.0}
    assert any("gpu1" in w for w in cat.describe()["warnings"])
    only_gpu = PriceCatalog([GPU1], default_node_type="gpu1")
    assert only_gpu.cpu_hour_price() == 0.0
    assert only_gpu.price_of({"CPU": 4, "GPU": 1}) == pytest.approx(1.40, abs=EPS)
    assert any("no CPU-only node type" in w for w in only_gpu.describe()["warnings"])


def test_describe_labels_illustrative_prices(catalog: PriceCatalog) -> None:
    info = catalog.describe()
    assert info["illustrative"] is True  # cpu4 is illustrative (the NodeTypeConfig default)
    assert info["prices_read_on"] == ["2026-11-26"]
    assert info["note"].startswith("ILLUSTRATIVE")
    assert json.loads(json.dumps(info)) == info
    assert catalog.table().startswith("ILLUSTRATIVE")
    real = PriceCatalog([GPU1], default_node_type="gpu1")
    assert real.describe()["illustrative"] is False
    assert "ILLUSTRATIVE" not in real.describe()["note"]


def test_shipped_aws_catalog() -> None:
    cfg = load_config("tune", ["cost=aws_illustrative"])
    cat = PriceCatalog.from_config(cfg.cost)
    assert cat.describe()["illustrative"] is True
    cpu = 0.2016 / 4  # m7i.xlarge, the default node type
    assert cat.cpu_hour_price("on_demand") == pytest.approx(cpu, abs=EPS)
    assert cat.gpu_hour_prices("on_demand")["A10G"] == pytest.approx(1.006 - 4 * cpu, abs=EPS)
    assert cat.gpu_hour_prices("spot")["H100"] == pytest.approx((30.0 - 192 * 0.02) / 8, abs=EPS)


def test_catalog_checks_a_hand_built_node_list() -> None:
    with pytest.raises(ConfigError, match=r"cost\.default_node_type"):
        PriceCatalog([CPU4], default_node_type="gpu1")


# ------------------------------------------------------------------------------------- meter
def test_two_cpu_trial_for_half_an_hour(catalog: PriceCatalog) -> None:
    on_demand = CostMeter(catalog, "on_demand")
    on_demand.start("a", {"CPU": 2}, t=0.0)
    cost = on_demand.finish("a", "completed", t=1800.0, cpu_seconds=1800.0)
    assert cost.billed_usd == pytest.approx(0.10, abs=EPS)  # 2 CPU x 0.5 h x $0.10
    # One CPU busy the whole time: algorithmic is half the bill.
    assert cost.algorithmic_usd == pytest.approx(0.05, abs=EPS)
    assert cost.waste_usd == 0.0
    assert cost.cpu_hours == pytest.approx(1.0, abs=EPS)
    assert cost.gpu_hours == 0.0
    spot = CostMeter(catalog, "spot")
    spot.start("a", {"CPU": 2}, t=0.0)
    assert spot.finish("a", "completed", t=1800.0).billed_usd == pytest.approx(0.04, abs=EPS)


def test_gpu_trial(catalog: PriceCatalog) -> None:
    meter = CostMeter(catalog, node_type="gpu1")
    meter.start("g", {"CPU": 2, "GPU": 1}, t=100.0)
    cost = meter.finish("g", TrialStatus.completed, t=100.0 + 3600.0)
    assert cost.billed_usd == pytest.approx(1.20, abs=EPS)
    assert cost.gpu_hours == pytest.approx(1.0, abs=EPS)
    assert cost.node_type == "gpu1"
    assert meter.gpu_hours() == pytest.approx(1.0, abs=EPS)


def test_gpu_trial_on_a_cpu_node_fails_at_start(meter: CostMeter) -> None:
    with pytest.raises(ConfigError, match="gpu1"):
        meter.start("g", {"GPU": 1}, t=0.0)
    assert meter.trial_ids == []


def test_preempted_and_failed_trials_are_waste(meter: CostMeter) -> None:
    meter.start("ok", {"CPU": 2}, t=0.0)
    meter.start("spot", {"CPU": 2}, t=0.0)
    meter.start("bad", {"CPU": 1}, t=0.0)
    meter.start("pruned", {"CPU": 1}, t=0.0)
    meter.finish("ok", "completed", t=1800.0)
    assert meter.finish("spot", "preempted", t=900.0).waste_usd == pytest.approx(0.05, abs=EPS)
    assert meter.finish("bad", "failed", t=360.0).waste_usd == pytest.approx(0.01, abs=EPS)
    assert meter.finish("pruned", "pruned", t=360.0).waste_usd == 0.0  # early stopping: no waste
    totals = meter.total()
    assert totals.billed_usd == pytest.approx(0.10 + 0.05 + 0.01 + 0.01, abs=EPS)
    assert totals.waste_usd == pytest.approx(0.06, abs=EPS)
    assert meter.by_status() == pytest.approx(
        {"completed": 0.10, "preempted": 0.05, "failed": 0.01, "pruned": 0.01}, abs=EPS
    )


def test_restart_from_checkpoint_counts_lost_work(meter: CostMeter) -> None:
    meter.start("r", {"CPU": 2}, t=0.0)  # $0.20 per hour
    meter.update("r", t=600.0, checkpoint=True)
    meter.restart("r", t=900.0)  # 300 s since the checkpoint are lost
    cost = meter.finish("r", "completed", t=1800.0)
    assert cost.billed_usd == pytest.approx(0.10, abs=EPS)
    assert cost.lost_s == pytest.approx(300.0)
    assert cost.waste_usd == pytest.approx(0.20 * 300 / 3600, abs=EPS)
    assert cost.restarts == 1


def test_restart_with_explicit_lost_seconds_reopens_a_failed_trial(meter: CostMeter) -> None:
    meter.start("r", {"CPU": 2}, t=0.0)
    assert meter.finish("r", "failed", t=900.0).waste_usd == pytest.approx(0.05, abs=EPS)
    meter.restart("r", lost_seconds=450.0, t=1000.0)  # half the work survived in a checkpoint
    assert meter.trial_cost("r", now=1000.0).status is TrialStatus.running
    cost = meter.finish("r", "completed", t=1900.0)  # the 100 s gap was not billed
    assert cost.held_s == pytest.approx(1800.0)
    assert cost.billed_usd == pytest.approx(0.10, abs=EPS)
    assert cost.waste_usd == pytest.approx(0.025, abs=EPS)


def test_paused_time_is_not_billed(meter: CostMeter) -> None:
    meter.start("p", {"CPU": 2}, t=0.0)
    meter.pause("p", t=900.0)
    assert meter.burn_rate() == 0.0
    assert meter.committed(now=5000.0) == pytest.approx(0.05, abs=EPS)
    meter.resume("p", t=5000.0)
    cost = meter.finish("p", "completed", t=5900.0)
    assert cost.billed_usd == pytest.approx(0.10, abs=EPS)
    assert cost.held_s == pytest.approx(1800.0)


def test_committed_counts_running_trials_so_far(meter: CostMeter) -> None:
    meter.start("done", {"CPU": 2}, t=0.0)
    meter.finish("done", "completed", t=1800.0)
    meter.start("live", {"CPU": 4}, t=1800.0)  # $0.40 per hour
    assert meter.committed(now=2700.0) == pytest.approx(0.10 + 0.10, abs=EPS)
    totals = meter.total(now=2700.0)
    assert totals.settled_usd == pytest.approx(0.10, abs=EPS)
    assert totals.running_usd == pytest.approx(0.10, abs=EPS)
    assert (totals.trials_started, totals.trials_finished, totals.trials_running) == (2, 1, 1)
    # Without `now` and without a clock, readings use the latest event time.
    assert meter.committed() == pytest.approx(0.10, abs=EPS)
    meter.update("live", t=3600.0, cpu_seconds=3600.0)
    assert meter.committed() == pytest.approx(0.10 + 0.20, abs=EPS)
    assert meter.burn_rate() == pytest.approx(0.40, abs=EPS)


def test_breakdowns_and_records(catalog: PriceCatalog) -> None:
    meter = CostMeter(catalog, "on_demand")
    meter.start("c", {"CPU": 2}, t=0.0)
    meter.start("g", {"CPU": 2, "GPU": 1}, t=0.0, node_type="gpu1")
    meter.finish("c", "completed", t=1800.0, cpu_seconds=900.0)
    meter.finish("g", "budget_stopped", t=1800.0)
    assert meter.by_node_type() == pytest.approx({"cpu4": 0.10, "gpu1": 0.60}, abs=EPS)
    assert meter.by_status() == pytest.approx({"completed": 0.10, "budget_stopped": 0.60}, abs=EPS)
    records = meter.to_records()
    assert [r["trial_id"] for r in records] == ["c", "g"]
    assert records[0]["status"] == "completed" and records[0]["pricing"] == "on_demand"
    assert records[0]["algorithmic_usd"] == pytest.approx(0.025, abs=EPS)
    assert records[1]["cpu_seconds"] is None  # never reported
    assert json.loads(json.dumps(records)) == records


def test_clock_injection() -> None:
    now = [10.0]
    cat = PriceCatalog([CPU4], default_node_type="cpu4")
    meter = CostMeter(cat, clock=lambda: now[0])
    meter.start("a", {"CPU": 2})
    now[0] = 10.0 + 1800.0
    assert meter.committed() == pytest.approx(0.10, abs=EPS)
    assert meter.elapsed_s() == pytest.approx(1800.0)
    assert meter.finish("a", "completed").billed_usd == pytest.approx(0.10, abs=EPS)


def test_meter_misuse_is_refused(meter: CostMeter) -> None:
    with pytest.raises(ValueError, match="needs `t=`"):
        meter.start("a", {"CPU": 1})
    meter.start("a", {"CPU": 1}, t=10.0)
    with pytest.raises(ValueError, match="already started"):
        meter.start("a", {"CPU": 1}, t=11.0)
    with pytest.raises(ValueError, match="backwards"):
        meter.update("a", t=5.0)
    with pytest.raises(ValueError, match="final status"):
        meter.finish("a", "running", t=12.0)
    with pytest.raises(ValueError, match="must be one of"):
        meter.finish("a", "exploded", t=12.0)
    with pytest.raises(ValueError, match="cpu_seconds"):
        meter.update("a", t=12.0, cpu_seconds=-1.0)
    meter.finish("a", "completed", t=12.0)
    with pytest.raises(ValueError, match="cannot finish"):
        meter.finish("a", "completed", t=13.0)
    with pytest.raises(KeyError, match="never started"):
        meter.update("zzz", t=13.0)


# ------------------------------------------------------------------------------------ budget
def test_dollar_budget_trips_when_spend_reaches_the_limit(meter: CostMeter) -> None:
    budget = Budget(usd=0.10)
    meter.start("a", {"CPU": 2}, t=0.0)  # $0.20 per hour: $0.10 at t=1800
    assert budget.exceeded(meter, now=1799.0) is None
    reason = budget.exceeded(meter, now=1800.0)
    assert reason is not None
    assert "`tune.budget_usd`" in reason
    assert "$0.1000" in reason  # spent and limit, in dollars
    assert budget.remaining(meter, now=900.0) == pytest.approx({"usd": 0.05}, abs=EPS)
    assert budget.remaining(meter, now=9000.0) == {"usd": 0.0}


def test_other_budgets(catalog: PriceCatalog) -> None:
    meter = CostMeter(catalog, node_type="gpu1", opened_at=0.0)
    meter.start("g", {"CPU": 1, "GPU": 2}, t=60.0)
    gpu = Budget(gpu_hours=1.0)
    assert gpu.exceeded(meter, now=60.0 + 1799.0) is None
    assert "`tune.budget_gpu_hours`" in (gpu.exceeded(meter, now=60.0 + 1800.0) or "")
    wall = Budget(wall_s=600.0)  # counted from opened_at, not from the first trial
    assert wall.exceeded(meter, now=599.0) is None
    assert "`tune.budget_wall_s`" in (wall.exceeded(meter, now=600.0) or "")
    trials = Budget(trials=1)
    assert trials.exceeded(meter, now=700.0) is None  # running trials are not finished ones
    meter.finish("g", "pruned", t=700.0)
    assert "`tune.budget_trials`" in (trials.exceeded(meter) or "")
    assert Budget().unlimited and Budget().exceeded(meter) is None


def test_would_exceed_projects_the_next_interval(meter: CostMeter) -> None:
    budget = Budget(usd=0.10)
    meter.start("a", {"CPU": 2}, t=0.0)
    meter.start("b", {"CPU": 2}, t=0.0)  # together $0.40 per hour
    assert budget.would_exceed(meter, 0.05, now=450.0) is None  # 0.05 + 0.05 = limit: fits
    reason = budget.would_exceed(meter, 0.06, now=450.0)
    assert reason is not None and "`tune.budget_usd`" in reason and "$0.1100" in reason
    # Without a dollar figure, the burn rate over the interval: 0.05 + 0.40 * 0.25 h.
    assert budget.would_exceed(meter, interval_s=900.0, now=450.0) is not None
    assert budget.would_exceed(meter, interval_s=450.0, now=450.0) is None
    # Running trials count against a trial budget as if they had finished.
    assert Budget(trials=3).would_exceed(meter, new_trials=1, now=450.0) is None
    assert Budget(trials=2).would_exceed(meter, new_trials=1, now=450.0) is not None


def test_budget_from_config_and_bad_limits() -> None:
    budget = Budget.from_config(TuneConfig(budget_usd=5.0, budget_trials=10))
    assert (budget.usd, budget.gpu_hours, budget.wall_s, budget.trials) == (5.0, None, None, 10)
    with pytest.raises(ConfigError, match=r"`tune\.budget_usd` must be null or positive"):
        Budget(usd=-1.0)


def test_cost_package_imports_no_ray() -> None:
    code = (
        "import sys, ray_ml.cost; "
        "heavy = [m for m in ('ray', 'torch', 'xgboost') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
