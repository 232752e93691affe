# Signal sources: the exposition parser (against text our MetricsRegistry renders), ScrapeSource
# with scripted /metrics bodies, PromQLSource against a fake Prometheus HTTP API on 127.0.0.1:0.
tandem_test(controller_sources_test
  SOURCES prom_text_test.cc scrape_source_test.cc promql_source_test.cc
  LIBS tandem_controller_sources tandem_metrics tandem_http)
