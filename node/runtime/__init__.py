"""The node process's machinery: storage, execution, consensus driving, peers, observer mode."""
