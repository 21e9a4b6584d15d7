"""A local STS (AssumeRole, AssumeRoleWithOIDC over HTTPS) and an ECS instance metadata service:
the temporary credentials of ``ram_role_arn``, ``oidc_role_arn`` and ``ecs_ram_role`` connections."""
