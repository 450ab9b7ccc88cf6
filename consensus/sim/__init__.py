"""Deterministic whole-cluster simulation of the PBFT core (see cluster.py)."""

from consensus.sim.cluster import Cluster, SimConfig, SimResult, run

__all__ = ["Cluster", "SimConfig", "SimResult", "run"]
