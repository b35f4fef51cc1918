// main() of the integration test binaries: registers the PostgreSQL environment.
#include "tests/support/pg.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new platform::harness::PgEnvironment);
  return RUN_ALL_TESTS();
}
