//! Prometheus metrics of a BastionAI node and their HTTP endpoint.
