"""Ray runtime: Serve deployments for experts, deployment options from config, tracing in every process."""
