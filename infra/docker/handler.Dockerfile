# The upload handler as an AWS Lambda container image: the `handler` extra only (celery,
# kombu, redis), no torch, PIL, numpy or boto3, so a cold start takes milliseconds.
#   docker build -f infra/docker/handler.Dockerfile -t sightline-handler .
# The build context is the repository root. The same image runs the MinIO webhook in
# infra/compose.yaml (with its entrypoint overridden).
ARG LAMBDA_BASE=public.ecr.aws/lambda/python:3.12

FROM ${LAMBDA_BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# Only the package the handler imports (the task contract is handlers/contract.py): the
# wheel leaves sightline/, workers/ and models/ out.
COPY handlers ./handlers
RUN pip install --no-cache-dir --target /out ".[handler]"

FROM ${LAMBDA_BASE}
COPY --from=build /out ${LAMBDA_TASK_ROOT}
CMD ["handlers.lambda_function.handler"]
