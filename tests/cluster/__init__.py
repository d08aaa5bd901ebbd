"""Tests on a real two-node Ray cluster on this machine (:class:`tests.cluster.twonode.TwoNodeCluster`)."""
