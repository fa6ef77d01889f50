#!/usr/bin/env python3
"""Probe a lacnet server with standard gRPC tooling, not lacnet's own code.

grpcio's reflection client (grpcio-reflection) and health client
(grpcio-health-checking) talk to a running hub or site agent over mTLS, and
the script prints what they saw as one JSON object for the Rust test that
runs it (tests/tests/tooling.rs) to check:

  {"v1alpha": [...services...], "v1": [...services...],
   "methods": {"<service>": [...methods...]}, "health": {"<service>": "SERVING"}}

v1alpha is listed through grpcio-reflection's ProtoReflectionDescriptorDatabase,
and each service is resolved to its methods through a protobuf DescriptorPool
built on it, which fetches the files by reflection as a generic tool does.
grpcio-reflection ships only the v1alpha messages; v1's messages are
identical on the wire, so v1 is asked with them on the v1 method path.

Needs: pip install grpcio grpcio-reflection grpcio-health-checking
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def list_v1(channel):
    """Lists services through grpc.reflection.v1 (same messages as v1alpha)."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(call(iter([request]), timeout=10))
    return sorted(s.name for s in responses[0].list_services_response.service)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--server-name", required=True, help="name on the server certificate")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--health", action="append", default=[], help="service to health-check")
    args = parser.parse_args()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    options = [("grpc.ssl_target_name_override", args.server_name)]
    with grpc.secure_channel(args.target, credentials, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        database = ProtoReflectionDescriptorDatabase(channel)
        v1alpha = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        methods = {
            name: [m.name for m in pool.FindServiceByName(name).methods] for name in v1alpha
        }
        v1 = list_v1(channel)
        stub = health_pb2_grpc.HealthStub(channel)
        health = {}
        for service in args.health:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            health[service] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    json.dump({"v1alpha": v1alpha, "v1": v1, "methods": methods, "health": health}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
