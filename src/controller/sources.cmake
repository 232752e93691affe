# Signal sources (signal_source.h): the Prometheus text parser, the direct scrape of every
# process's /metrics, and PromQL against the Prometheus HTTP API. Only the common library
# (libcurl through http_client.h) and nlohmann_json; no CUDA, no gRPC.
add_library(tandem_controller_sources
  prom_text.cc
  promql_source.cc
  scrape_source.cc
)
tandem_target_defaults(tandem_controller_sources)
target_link_libraries(tandem_controller_sources
  PUBLIC tandem_common absl::status absl::statusor
  PRIVATE nlohmann_json::nlohmann_json)
