"""Generated protobuf and gRPC stubs of protos/zoo/node/v1 (scripts/gen_protos.py); do not edit."""
