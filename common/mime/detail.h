// common/mime/detail.h — internals shared by the files of common/mime; not
// for users of the library.
//
//   detail::initGMime();                               // before any GMime call
//   detail::GPtr<GMimeStream> s(spool.openStream());   // g_object_unref'd once
#pragma once

#include <glib-object.h>

#include <memory>

namespace sekimori::mime::detail {

// g_mime_init exactly once per process, safe from any thread (the milter
// runs one thread per connection). The only global state of this library.
void initGMime();

// A GObject reference owned once.
struct Unref {
  void operator()(gpointer p) const {
    if (p) g_object_unref(p);
  }
};
template <class T>
using GPtr = std::unique_ptr<T, Unref>;

}  // namespace sekimori::mime::detail
