/* A translation unit for the fake targets; the include below is what INCLUDE_VIOLATION catches. */
#if 0
#include "engine/engine.h"
#endif
