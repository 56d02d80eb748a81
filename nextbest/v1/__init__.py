"""Generated from proto/nextbest/v1 by tools/gen_proto.py. Do not edit."""
