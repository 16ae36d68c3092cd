//! The lab: containerlab-format topologies brought up as network namespaces.
