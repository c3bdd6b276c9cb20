
/*
 * Copyright (C) aigw authors
 */


/*
 * Unit test of the request body scanner, built standalone against the
 * include directories of a configured nginx tree and linked with cJSON
 * (see t/unit/README.md):
 *
 *     test_scan t/data/json
 *
 * Every body is copied to a buffer of its exact size, so AddressSanitizer
 * sees any read past its end.  cJSON, which the gateway used before, is the
 * oracle for the string byte count; and every scan is run again through
 * the reference scanner (t/fuzz/scan_ref.c), which must give the same.
 */


#include "../../ngx_http_aigw_module/ngx_http_aigw_scan.c"
#include "../../ngx_http_aigw_module/ngx_http_aigw_usage.c"
#include "t_unit.h"
#include "../fuzz/scan_ref.c"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <time.h>


#define T_TEXTS         64

#define T(s)            (u_char *) s, sizeof(s) - 1


typedef struct {
    u_char                     *buf;
    size_t                      n;
    ngx_int_t                   rc;
    ngx_http_aigw_scan_t        s;
    ngx_http_aigw_span_t        text[T_TEXTS];
    ngx_http_aigw_span_t        keys[NGX_HTTP_AIGW_SCAN_KEYS];
} t_run_t;


typedef struct {
    u_char                     *body;
    size_t                      len;
    ngx_int_t                   rc;
} t_grammar_t;


typedef struct {
    u_char                     *body;
    size_t                      len;
    const char                 *texts;      /* joined by "|" */
} t_text_t;


typedef struct {
    u_char                     *in;
    size_t                      in_len;
    u_char                     *out;
    size_t                      out_len;
} t_unescape_t;


typedef struct {
    const char                 *file;
    ngx_uint_t                  ntext;
    const char                 *first;      /* the first text's start */
    const char                 *last;       /* the last text span */
    ngx_uint_t                  fields;     /* bit per NGX_HTTP_AIGW_F_ */
} t_expect_t;


/* the scan's checks: what it finds in "messages", "input", text */
typedef struct {
    u_char                     *body;
    size_t                      len;
    ngx_uint_t                  messages;   /* NGX_HTTP_AIGW_SHAPE_ */
    ngx_uint_t                  index;
    u_char                      value;      /* its first byte, 0: NULL */
    ngx_uint_t                  input;
    ngx_uint_t                  prompt;
    ngx_uint_t                  text;       /* NGX_HTTP_AIGW_TEXT_ */
    ngx_uint_t                  field;      /* of the text's failure */
} t_check_t;


static ngx_uint_t  t_reference = 1;


#define F(x)  (1 << NGX_HTTP_AIGW_F_##x)

static t_expect_t  t_expects[] = {

    { "openai_chat_tools.json", 3,
      "You are a weather bot. Answer in \\\"plain\\\" English.",
      "{\\\"temp\\\": 18.5, \\\"unit\\\": \\\"C\\\"}",
      F(MODEL) | F(MESSAGES) | F(TOOLS) | F(STREAM) | F(STREAM_OPTIONS)
      | F(INCLUDE_USAGE) | F(MAX_COMPLETION_TOKENS) | F(USER) },

    { "anthropic_thinking.json", 6,
      "You are a careful assistant.",
      "Serendipity is a happy accident.",
      F(MODEL) | F(MAX_TOKENS) | F(SYSTEM) | F(METADATA) | F(USER_ID)
      | F(TOOLS) | F(MESSAGES) | F(STREAM) },

    /* "instructions", the Responses API's system prompt, is text */
    { "responses.json", 3, "Be brief.", "It is a cat.",
      F(MODEL) | F(INPUT) | F(METADATA) | F(USER_ID) | F(INSTRUCTIONS) },

    { "embeddings_array.json", 3, "The food was delicious", "",
      F(MODEL) | F(INPUT) },

    { "embeddings_string.json", 1,
      "The food was delicious and the waiter...",
      "The food was delicious and the waiter...",
      F(MODEL) | F(INPUT) },

    { "completions.json", 2, "Say this is a test", "\\u00bfY esto?",
      F(MODEL) | F(PROMPT) | F(MAX_TOKENS) },

    { "numbers.json", 0, NULL, NULL, F(MODEL) | F(MAX_TOKENS) },

    { "unicode.json", 1, "raw UTF-8: Gr\xc3\xbc\xc3\x9f" "e", NULL,
      F(MODEL) | F(MESSAGES) | F(USER) },

    { "lone_surrogates.json", 1, "lone: \\ud800 \\udfff", NULL,
      F(MODEL) | F(MESSAGES) },

    { "conversation_50k.json", 0, "You are a helpful assistant.", NULL,
      F(MODEL) | F(MESSAGES) | F(STREAM) | F(STREAM_OPTIONS)
      | F(INCLUDE_USAGE) | F(USER) },

    { "bench_request.json", 2,
      "You are a helpful assistant. Answer briefly and precisely.",
      "Summarise in two sentences why keep-alive connections reduce "
      "latency for HTTP APIs, and name one trade-off.",
      F(MODEL) | F(MESSAGES) | F(MAX_TOKENS) | F(USER) },

    /* an answer: no text spans, "usage" and "id" found */
    { "bench_answer.json", 0, NULL, NULL, F(MODEL) | F(USAGE) | F(ID) },

    { NULL, 0, NULL, NULL, 0 }
};


static t_grammar_t  t_grammar[] = {

    /* valid */
    { T("{}"), NGX_OK },
    { T(" \t\r\n{ \t\r\n} \t\r\n"), NGX_OK },
    { T("{\"a\":1}"), NGX_OK },
    { T("{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] }"), NGX_OK },
    { T("{\"\":\"\"}"), NGX_OK },
    { T("{\"a\":[0,-0,1,-1,10,0.5,-0.5,1e5,1E5,1e+5,1e-5,1.5E-05]}"),
      NGX_OK },
    { T("{\"a\":[12345678901234567890,1e400,0.1000,-0.0e0]}"), NGX_OK },
    { T("{\"a\":[true,false,null,[],{},[[]],[{}]]}"), NGX_OK },
    { T("{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u00E9\\uFFFF\"}"),
      NGX_OK },
    { T("{\"a\":\"\\ud800\\udc00\\ud800\\udbff\\u0041\"}"), NGX_OK },
    { T("{\"a\":\"\x7f\x80\xff\xc3\xa9 raw\"}"), NGX_OK },
    { T("{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}"), NGX_OK },
    { T("{\"a\":1,\"A\":2}"), NGX_OK },
    { T("{\"a\":{\"b\":1,\"b\":2}}"), NGX_OK },   /* nested: not checked */
    { T("{\"a\":[{\"b\":1},{\"b\":2}]}"), NGX_OK },

    /* not an object at the top */
    { T(""), NGX_ERROR },
    { T(" \n"), NGX_ERROR },
    { T("[]"), NGX_ERROR },
    { T("1"), NGX_ERROR },
    { T("\"a\""), NGX_ERROR },
    { T("null"), NGX_ERROR },
    { T("\xef\xbb\xbf{}"), NGX_ERROR },
    { T("\f{}"), NGX_ERROR },
    { T("\v{}"), NGX_ERROR },

    /* structure */
    { T("{"), NGX_ERROR },
    { T("}"), NGX_ERROR },
    { T("{}}"), NGX_ERROR },
    { T("{}{}"), NGX_ERROR },
    { T("{} x"), NGX_ERROR },
    { T("{}\0"), NGX_ERROR },
    { T("{\"a\"}"), NGX_ERROR },
    { T("{\"a\":}"), NGX_ERROR },
    { T("{\"a\" 1}"), NGX_ERROR },
    { T("{\"a\"::1}"), NGX_ERROR },
    { T("{\"a\":1,}"), NGX_ERROR },
    { T("{,}"), NGX_ERROR },
    { T("{,\"a\":1}"), NGX_ERROR },
    { T("{\"a\":1 \"b\":2}"), NGX_ERROR },
    { T("{\"a\":1;\"b\":2}"), NGX_ERROR },
    { T("{a:1}"), NGX_ERROR },
    { T("{'a':1}"), NGX_ERROR },
    { T("{1:1}"), NGX_ERROR },
    { T("{\"a\":[1 2]}"), NGX_ERROR },
    { T("{\"a\":[1,]}"), NGX_ERROR },
    { T("{\"a\":[,1]}"), NGX_ERROR },
    { T("{\"a\":[}"), NGX_ERROR },
    { T("{\"a\":]}"), NGX_ERROR },
    { T("{\"a\":[1}"), NGX_ERROR },
    { T("{\"a\":{]}"), NGX_ERROR },
    { T("{\"a\":{\"b\"]}"), NGX_ERROR },
    { T("{\"a\":[1]]}"), NGX_ERROR },
    { T("{\"a\":1}}"), NGX_ERROR },
    { T("{\"a\":/* c */1}"), NGX_ERROR },

    /* numbers */
    { T("{\"a\":01}"), NGX_ERROR },
    { T("{\"a\":-01}"), NGX_ERROR },
    { T("{\"a\":00}"), NGX_ERROR },
    { T("{\"a\":-}"), NGX_ERROR },
    { T("{\"a\":--1}"), NGX_ERROR },
    { T("{\"a\":+1}"), NGX_ERROR },
    { T("{\"a\":1.}"), NGX_ERROR },
    { T("{\"a\":.5}"), NGX_ERROR },
    { T("{\"a\":1.e5}"), NGX_ERROR },
    { T("{\"a\":1e}"), NGX_ERROR },
    { T("{\"a\":1e+}"), NGX_ERROR },
    { T("{\"a\":1e+-1}"), NGX_ERROR },
    { T("{\"a\":1.5.5}"), NGX_ERROR },
    { T("{\"a\":0x10}"), NGX_ERROR },
    { T("{\"a\":1_000}"), NGX_ERROR },
    { T("{\"a\":Infinity}"), NGX_ERROR },
    { T("{\"a\":-Infinity}"), NGX_ERROR },
    { T("{\"a\":NaN}"), NGX_ERROR },
    { T("{\"a\":-}"), NGX_ERROR },

    /* literals */
    { T("{\"a\":tru}"), NGX_ERROR },
    { T("{\"a\":True}"), NGX_ERROR },
    { T("{\"a\":truee}"), NGX_ERROR },
    { T("{\"a\":nul}"), NGX_ERROR },
    { T("{\"a\":NULL}"), NGX_ERROR },
    { T("{\"a\":fals}"), NGX_ERROR },
    { T("{\"a\":undefined}"), NGX_ERROR },

    /* strings */
    { T("{\"a\":\"x}"), NGX_ERROR },
    { T("{\"a\":'x'}"), NGX_ERROR },
    { T("{\"a\":\"\\x\"}"), NGX_ERROR },
    { T("{\"a\":\"\\U0041\"}"), NGX_ERROR },
    { T("{\"a\":\"\\u12\"}"), NGX_ERROR },
    { T("{\"a\":\"\\u12g4\"}"), NGX_ERROR },
    { T("{\"a\":\"\\u 123\"}"), NGX_ERROR },
    { T("{\"a\":\"\\ud800\\u12\"}"), NGX_ERROR },
    { T("{\"a\":\"\\\"}"), NGX_ERROR },
    { T("{\"a\":\"\\'\"}"), NGX_ERROR },
    { T("{\"a\":\"tab\there\"}"), NGX_ERROR },
    { T("{\"a\":\"line\nbreak\"}"), NGX_ERROR },
    { T("{\"a\":\"nul\0\"}"), NGX_ERROR },
    { T("{\"a\":\"\x1f\"}"), NGX_ERROR },
    { T("{\"a\x01\":1}"), NGX_ERROR },
    { T("{\"a\":\"0123456789abcdef\x01 0123456789abcdef\"}"), NGX_ERROR },

    /* duplicate top-level keys, after unescaping */
    { T("{\"a\":1,\"a\":2}"), NGX_DECLINED },
    { T("{\"a\":1,\"b\":2,\"c\":3,\"b\":4}"), NGX_DECLINED },
    { T("{\"model\":\"x\",\"mod\\u0065l\":\"y\"}"), NGX_DECLINED },
    { T("{\"mod\\u0065l\":\"x\",\"m\\u006Fdel\":\"y\"}"), NGX_DECLINED },
    { T("{\"\\u00e9\":1,\"\xc3\xa9\":2}"), NGX_DECLINED },
    { T("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}"), NGX_DECLINED },
    { T("{\"\\/\":1,\"/\":2}"), NGX_DECLINED },
    { T("{\"a\\\"\":1,\"a\\u0022\":2}"), NGX_DECLINED },
    { T("{\"\":1,\"\":2}"), NGX_DECLINED },
    { T("{\"model\":1,\"model\\u0000\":2}"), NGX_OK },
    { T("{\"USER\":1,\"user\":2}"), NGX_OK },
    { T("{\"\\ud800\":1,\"\\udc00\":2}"), NGX_DECLINED },   /* U+FFFD */
    { T("{\"ab\":1,\"a\\u0062c\":2}"), NGX_OK },
    { T("{\"a\":1,\"a\":2,}"), NGX_ERROR },     /* not JSON first */

    { NULL, 0, 0 }
};


static t_text_t  t_texts[] = {

    /* OpenAI chat: a string content, text parts */
    { T("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
        "\"sys\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
        "\"text\":\"a\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"http://x\"}}]},{\"role\":\"assistant\",\"content\":null,"
        "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{}\"}}]}]}"),
      "sys|a" },

    /* Anthropic: system as a string and as blocks */
    { T("{\"system\":\"s\",\"messages\":[]}"), "s" },
    { T("{\"system\":[{\"type\":\"text\",\"text\":\"s1\"},{\"type\":"
        "\"text\",\"text\":\"s2\",\"cache_control\":{\"type\":"
        "\"ephemeral\"}}]}"),
      "s1|s2" },

    /* tool_result with nested and flat content */
    { T("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"tool_result\",\"tool_use_id\":\"t\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"deep\"}]},{\"type\":\"tool_result\","
        "\"tool_use_id\":\"u\",\"content\":\"flat\"}]}]}"),
      "deep|flat" },

    /* thinking, its signature and tool_use input are not text */
    { T("{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
        "\"thinking\",\"thinking\":\"hmm\",\"signature\":\"c2ln\"},"
        "{\"type\":\"redacted_thinking\",\"data\":\"x\"},{\"type\":"
        "\"text\",\"text\":\"ans\"},{\"type\":\"tool_use\",\"id\":\"i\","
        "\"name\":\"n\",\"input\":{\"q\":\"v\"}}]}]}"),
      "ans" },

    /* embeddings, completions */
    { T("{\"input\":\"one\"}"), "one" },
    { T("{\"input\":[\"a\",\"b\"]}"), "a|b" },
    { T("{\"input\":[[1,2],[3]]}"), "" },
    { T("{\"input\":[1,2,3]}"), "" },
    { T("{\"prompt\":\"p\"}"), "p" },
    { T("{\"prompt\":[\"p1\",\"p2\"],\"suffix\":\"no\"}"), "p1|p2" },

    /* Responses: instructions, items with input_text parts; outputs
     * are not text */
    { T("{\"instructions\":\"i\",\"input\":[{\"role\":\"user\","
        "\"content\":[{\"type\":\"input_text\",\"text\":\"q\"}]},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c\","
        "\"output\":\"no\"},{\"role\":\"user\",\"content\":\"r\"}]}"),
      "i|q|r" },

    /* outside the text fields, nothing is text */
    { T("{\"content\":\"no\",\"text\":\"no\",\"tools\":[{\"content\":"
        "\"no\"}],\"metadata\":{\"text\":\"no\"}}"),
      "" },

    /* an array in an array is not text; an object in it still is seen */
    { T("{\"messages\":[[\"no\"],[{\"text\":\"yes\"}]]}"), "yes" },

    /* content as an object, and "text" at any depth */
    { T("{\"messages\":[{\"content\":{\"text\":\"t\",\"x\":\"no\"}}]}"),
      "t" },
    { T("{\"messages\":[{\"content\":[\"s\",[\"no\"],{\"text\":[\"u\","
        "\"v\"]}]}]}"),
      "s|u|v" },

    /* escaped keys, still escaped spans */
    { T("{\"m\\u0065ssages\":[{\"cont\\u0065nt\":\"a\\nb\"}]}"),
      "a\\nb" },
    { T("{\"messages\":[{\"Content\":\"no\",\"content \":\"no\"}]}"), "" },
    { NULL, 0, NULL }
};


static t_unescape_t  t_unescapes[] = {
    { T(""), T("") },
    { T("abc"), T("abc") },
    { T("a\\nb"), T("a\nb") },
    { T("\\\"\\\\\\/\\b\\f\\n\\r\\t"), T("\"\\/\b\f\n\r\t") },
    { T("\\u0041"), T("A") },
    { T("\\u0000"), T("\0") },
    { T("\\u007f\\u0080"), T("\x7f\xc2\x80") },
    { T("\\u00e9"), T("\xc3\xa9") },
    { T("\\u07FF\\u0800"), T("\xdf\xbf\xe0\xa0\x80") },
    { T("\\u20AC"), T("\xe2\x82\xac") },
    { T("\\uffff"), T("\xef\xbf\xbf") },
    { T("\\ud83d\\ude00"), T("\xf0\x9f\x98\x80") },
    { T("\\ud800\\udc00"), T("\xf0\x90\x80\x80") },
    { T("\\uDBFF\\uDFFF"), T("\xf4\x8f\xbf\xbf") },
    { T("\\ud800"), T("\xef\xbf\xbd") },
    { T("\\udc00"), T("\xef\xbf\xbd") },
    { T("\\ud800x"), T("\xef\xbf\xbdx") },
    { T("\\ud800\\u0041"), T("\xef\xbf\xbd" "A") },
    { T("\\ud800\\ud800\\udc00"), T("\xef\xbf\xbd\xf0\x90\x80\x80") },
    { T("\\ude00\\ud83d"), T("\xef\xbf\xbd\xef\xbf\xbd") },
    { T("\\ud800\\n"), T("\xef\xbf\xbd\n") },
    { T("x\xc3\xa9\\u00e9"), T("x\xc3\xa9\xc3\xa9") },
    { NULL, 0, NULL, 0 }
};


#define SH(x)   NGX_HTTP_AIGW_SHAPE_##x
#define TX(x)   NGX_HTTP_AIGW_TEXT_##x
#define FM      NGX_HTTP_AIGW_F_MESSAGES
#define FI      NGX_HTTP_AIGW_F_INPUT
#define FP      NGX_HTTP_AIGW_F_PROMPT
#define FS      NGX_HTTP_AIGW_F_SYSTEM

static t_check_t  t_checks_table[] = {

    /* messages */
    { T("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[]}"), SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":\"user\"},\"x\"]}"),
      SH(TYPE), 1, '"', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[1]}"), SH(TYPE), 0, '1', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[-1]}"), SH(TYPE), 0, '-', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[null]}"),
      SH(TYPE), 0, 'n', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[true]}"),
      SH(TYPE), 0, 't', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[[{\"role\":\"u\"}]]}"),
      SH(TYPE), 0, '[', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"content\":\"x\"}]}"),
      SH(NO_ROLE), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{}]}"),
      SH(NO_ROLE), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[ { } ]}"),
      SH(NO_ROLE), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":\"a\"},{\"role\":1}]}"),
      SH(ROLE_TYPE), 1, '1', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":\"a\",\"role\":null}]}"),
      SH(ROLE_TYPE), 0, 'n', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":null,\"role\":\"a\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\" :  false }]}"),
      SH(ROLE_TYPE), 0, 'f', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":[\"a\"]}]}"),
      SH(ROLE_TYPE), 0, '[', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":{}}]}"),
      SH(ROLE_TYPE), 0, '{', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"r\\u006fle\":\"a\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"Role\":\"a\",\"role \":\"b\"}]}"),
      SH(NO_ROLE), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"content\":{\"role\":1},\"role\":\"u\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"content\":[{\"role\":\"u\"}]}]}"),
      SH(NO_ROLE), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[ {\"role\" : \"u\"} , 5 ]}"),
      SH(TYPE), 1, '5', SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":\"u\"},{\"x\":1},3]}"),
      SH(NO_ROLE), 1, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":{\"role\":1}}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":\"x\",\"system\":[1]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"tools\":[1,{}],\"metadata\":{\"messages\":[1]}}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },

    /* input and prompt */
    { T("{\"input\":\"x\",\"prompt\":\"y\"}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"input\":[\"a\",1,-2,0.5,[1,2],[],[-1e3]]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"input\":[{\"a\":1}]}"),
      SH(OK), 0, 0, SH(TYPE), SH(OK), TX(OK), FM },
    { T("{\"input\":[\"a\",[1,\"x\"]]}"),
      SH(OK), 0, 0, SH(TYPE), SH(OK), TX(OK), FM },
    { T("{\"input\":[[[1]]]}"), SH(OK), 0, 0, SH(TYPE), SH(OK), TX(OK), FM },
    { T("{\"input\":[[null]]}"),
      SH(OK), 0, 0, SH(TYPE), SH(OK), TX(OK), FM },
    { T("{\"prompt\":[null]}"), SH(OK), 0, 0, SH(OK), SH(TYPE), TX(OK), FM },
    { T("{\"prompt\":[\"a\", true]}"),
      SH(OK), 0, 0, SH(OK), SH(TYPE), TX(OK), FM },
    { T("{\"input\":[ [ 1 , 2 ] , false ]}"),
      SH(OK), 0, 0, SH(TYPE), SH(OK), TX(OK), FM },
    { T("{\"input\":{\"a\":[{}]},\"prompt\":1}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[{\"role\":\"u\",\"content\":[{}]}],"
        "\"input\":[[\"x\"]],\"prompt\":[{}]}"),
      SH(OK), 0, 0, SH(TYPE), SH(TYPE), TX(OK), FM },

    /* text: \u0000 */
    { T("{\"messages\":[{\"role\":\"u\",\"content\":\"a\\u0000b\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FM },
    { T("{\"system\":\"\\u0000\"}"), SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL),
      FS },
    { T("{\"input\":[\"ok\",\"x\\u0000\"]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FI },
    { T("{\"prompt\":[\"\\n\\u0000\"]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FP },
    { T("{\"system\":\"\\ud800\\u0000\"}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FS },
    { T("{\"system\":\"\\\\u0000\\u0001\\u0100\"}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"system\":[{\"text\":\"\\u0000\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FS },

    /* text: UTF-8 */
    { T("{\"prompt\":\"\xff\"}"), SH(OK), 0, 0, SH(OK), SH(OK), TX(UTF8),
      FP },
    { T("{\"messages\":[{\"role\":\"u\",\"content\":[{\"type\":\"text\","
        "\"text\":\"\xc3(\"}]}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(UTF8), FM },
    { T("{\"system\":\"\xc0\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xc1\xbf\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xe0\x80\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xe0\x9f\xbf\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xf0\x8f\xbf\xbf\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xed\xa0\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xed\xbf\xbf\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xf4\x90\x80\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xf5\x80\x80\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\x80\"}"), SH(OK), 0, 0, SH(OK), SH(OK), TX(UTF8),
      FS },
    { T("{\"system\":\"a\xe2\x82\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\xf0\x9f\x98\\n\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"system\":\"\\u00e9\xc3\"}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FS },
    { T("{\"input\":[\"\xc3\xa9\",\"\xe9\"]}"), SH(OK), 0, 0, SH(OK), SH(OK),
      TX(UTF8), FI },
    { T("{\"system\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80"
        "\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xe2\x82\xac\"}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },

    /* the first failure in body order; other strings are not text */
    { T("{\"system\":\"\xff\",\"messages\":[{\"role\":\"u\","
        "\"content\":\"\\u0000\"}]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(UTF8), FS },
    { T("{\"messages\":[{\"role\":\"u\",\"content\":\"\\u0000\xff\"}],"
        "\"system\":\"\xff\"}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(NUL), FM },
    { T("{\"metadata\":{\"x\":\"\xff\\u0000\"},\"model\":\"\xff\","
        "\"messages\":[{\"role\":\"\xff\\u0000\",\"name\":\"\xc0\","
        "\"content\":\"ok\",\"tool_calls\":[{\"x\":\"\xff\"}]}],"
        "\"tools\":[\"\\u0000\"]}"),
      SH(OK), 0, 0, SH(OK), SH(OK), TX(OK), FM },
    { T("{\"messages\":[1,{\"content\":\"\xff\"}]}"),
      SH(TYPE), 0, '1', SH(OK), SH(OK), TX(UTF8), FM },

    { NULL, 0, 0, 0, 0, 0, 0, 0, 0 }
};


/* the same scan by the reference scanner must give the same */

static void
t_against_ref(t_run_t *r)
{
    ngx_int_t              rc;
    ngx_uint_t             i, n, same;
    ngx_http_aigw_span_t   text[T_TEXTS];
    ngx_http_aigw_scan_t   s;

    memset(&s, 0x5a, sizeof(s));
    s.text = r->s.text ? text : NULL;
    s.text_size = r->s.text_size;

    rc = ngx_http_aigw_ref_scan(&s, r->buf, r->buf + r->n);

    same = (rc == r->rc && s.error == r->s.error
            && (s.reason == r->s.reason
                || (s.reason && r->s.reason
                    && strcmp(s.reason, r->s.reason) == 0)));

    if (same && rc != NGX_ERROR) {
        same = (s.open == r->s.open && s.close == r->s.close
                && s.ntext == r->s.ntext
                && s.string_bytes == r->s.string_bytes);

        for (i = 0; same && i < NGX_HTTP_AIGW_F_N; i++) {
            same = (s.field[i].key == r->s.field[i].key
                    && (s.field[i].key == NULL
                        || (s.field[i].start == r->s.field[i].start
                            && s.field[i].end == r->s.field[i].end)));
        }

        n = ngx_min(s.ntext, s.text_size);

        for (i = 0; same && i < n; i++) {
            same = (s.text[i].start == r->s.text[i].start
                    && s.text[i].end == r->s.text[i].end);
        }
    }

    t_check(same, "not as the reference scanner: \"%.*s\" (rc %ld/%ld, "
            "%s/%s at %lu/%lu)", (int) ngx_min(r->n, 60), r->buf,
            (long) r->rc, (long) rc, r->s.reason ? r->s.reason : "-",
            s.reason ? s.reason : "-", (unsigned long) r->s.error,
            (unsigned long) s.error);
}


/*
 * The checks, after NGX_OK: as the body step's old walkers find them over
 * all the text spans, stored or not
 */

static int
t_shape_same(ngx_http_aigw_shape_t *a, ngx_http_aigw_shape_t *b)
{
    return a->error == b->error
           && (a->error == NGX_HTTP_AIGW_SHAPE_OK
               || (a->index == b->index && a->value == b->value));
}


static void
t_against_checks(t_run_t *r)
{
    int                    same;
    ngx_int_t              rc;
    ngx_http_aigw_scan_t   s;

    if (r->rc != NGX_OK) {
        return;
    }

    memset(&s, 0x5a, sizeof(s));
    s.text = calloc(r->s.ntext + 1, sizeof(ngx_http_aigw_span_t));
    s.text_size = r->s.ntext;

    rc = ngx_http_aigw_ref_scan(&s, r->buf, r->buf + r->n);

    if (rc == NGX_OK) {
        ngx_http_aigw_ref_check(&s);
    }

    same = (rc == NGX_OK
            && t_shape_same(&s.messages, &r->s.messages)
            && t_shape_same(&s.input, &r->s.input)
            && t_shape_same(&s.prompt, &r->s.prompt)
            && s.text_error == r->s.text_error
            && (s.text_error == NGX_HTTP_AIGW_TEXT_OK
                || (s.text_at == r->s.text_at
                    && s.text_field == r->s.text_field)));

    t_check(same, "checks not as the old walkers: \"%.*s\" (messages "
            "%lu/%lu at %lu/%lu, input %lu/%lu, prompt %lu/%lu, text "
            "%lu/%lu)", (int) ngx_min(r->n, 60), r->buf,
            (unsigned long) r->s.messages.error,
            (unsigned long) s.messages.error,
            (unsigned long) r->s.messages.index,
            (unsigned long) s.messages.index,
            (unsigned long) r->s.input.error, (unsigned long) s.input.error,
            (unsigned long) r->s.prompt.error,
            (unsigned long) s.prompt.error,
            (unsigned long) r->s.text_error, (unsigned long) s.text_error);

    free(s.text);
}


/*
 * The counts the scan read of an answer's "usage" object: as the usage
 * reader (ngx_http_aigw_usage_read()) reads them from the object's span
 */

static void
t_against_usage(t_run_t *r)
{
    int                     same;
    ngx_uint_t              i;
    ngx_http_aigw_usage_t   u;
    ngx_http_aigw_field_t  *f;

    f = &r->s.field[NGX_HTTP_AIGW_F_USAGE];

    if (r->rc != NGX_OK || f->key == NULL || *f->start != '{') {
        return;
    }

    same = (ngx_http_aigw_usage_read(&u, f->start, f->end) == NGX_OK);

    for (i = 0; same && i < NGX_HTTP_AIGW_U_N; i++) {
        same = (u.n[i] == r->s.usage.n[i]);
    }

    t_check(same, "usage counts not as the usage reader's: \"%.*s\"",
            (int) ngx_min(r->n, 60), r->buf);
}


/* scans a copy of exactly n bytes; t_done() frees it */

static void
t_run(t_run_t *r, const u_char *body, size_t n, size_t text_size)
{
    r->buf = t_dup(body, n);
    r->n = n;

    memset(&r->s, 0xa5, sizeof(r->s));
    r->s.text = text_size ? r->text : NULL;
    r->s.text_size = text_size;
    r->s.keys = r->keys;

    r->rc = ngx_http_aigw_scan(&r->s, r->buf, r->buf + n);

    t_against_usage(r);

    if (t_reference) {
        t_against_ref(r);
        t_against_checks(r);
    }
}


static void
t_done(t_run_t *r)
{
    free(r->buf);
    r->buf = NULL;
}


/* "a|b|c": the stored text spans, as sent */

static char *
t_join(t_run_t *r)
{
    char        *out;
    size_t       size;
    FILE        *f;
    ngx_uint_t   i;

    f = open_memstream(&out, &size);
    if (f == NULL) {
        exit(2);
    }

    for (i = 0; i < r->s.ntext && i < r->s.text_size; i++) {
        if (i) {
            fputc('|', f);
        }

        fwrite(r->text[i].start, 1, r->text[i].end - r->text[i].start, f);
    }

    fclose(f);

    return out;
}


static int
t_span_is(u_char *start, u_char *end, const char *want)
{
    if (want == NULL) {
        return start == NULL;
    }

    return start != NULL && (size_t) (end - start) == strlen(want)
           && memcmp(start, want, end - start) == 0;
}


static int
t_field_is(t_run_t *r, ngx_uint_t f, const char *key, const char *value)
{
    ngx_http_aigw_field_t  *fl;

    fl = &r->s.field[f];

    if (key == NULL) {
        return t_check(fl->key == NULL, "field %lu: present, want absent",
                       (unsigned long) f);
    }

    return t_check(fl->key != NULL && fl->key >= r->buf
                   && fl->key < r->buf + r->n
                   && memcmp(fl->key, key, strlen(key)) == 0
                   && t_span_is(fl->start, fl->end, value),
                   "field %lu: key \"%.*s\" value \"%.*s\", want %s: %s",
                   (unsigned long) f,
                   fl->key ? (int) ngx_min(strlen(key), (size_t) 20) : 0,
                   fl->key ? (char *) fl->key : "",
                   fl->start ? (int) (fl->end - fl->start) : 0,
                   fl->start ? (char *) fl->start : "", key, value);
}


/* the old code: strlen() of every cJSON string but "model"'s */

static size_t
t_cjson_bytes(cJSON *item)
{
    size_t  n;
    cJSON  *c;

    if (cJSON_IsString(item)) {
        return strlen(item->valuestring);
    }

    n = 0;

    cJSON_ArrayForEach(c, item) {
        if (c->string && strcmp(c->string, "model") == 0) {
            continue;
        }

        n += t_cjson_bytes(c);
    }

    return n;
}


static void
t_against_cjson(const char *what, const u_char *body, size_t n)
{
    cJSON    *json;
    t_run_t   r;

    json = cJSON_ParseWithLength((const char *) body, n);

    t_run(&r, body, n, 0);

    if (t_check(json != NULL && r.rc == NGX_OK, "%s: cJSON %s, scan %ld",
                what, json ? "parses" : "fails", (long) r.rc))
    {
        t_check(t_cjson_bytes(json) == r.s.string_bytes,
                "%s: string_bytes %lu, cJSON %lu", what,
                (unsigned long) r.s.string_bytes,
                (unsigned long) t_cjson_bytes(json));
    }

    cJSON_Delete(json);
    t_done(&r);
}


static void
t_grammars(void)
{
    t_run_t       r;
    t_grammar_t  *g;

    t_begin("grammar");

    for (g = t_grammar; g->body; g++) {
        t_run(&r, g->body, g->len, T_TEXTS);

        t_check(r.rc == g->rc, "%.*s: rc %ld, want %ld (%s at %lu)",
                (int) g->len, g->body, (long) r.rc, (long) g->rc,
                r.s.reason ? r.s.reason : "-", (unsigned long) r.s.error);

        if (r.rc == NGX_OK) {
            t_check(r.s.reason == NULL && r.s.error == 0
                    && r.s.open != NULL && *r.s.open == '{'
                    && r.s.close != NULL && *r.s.close == '}',
                    "%.*s: NGX_OK but reason, error, open or close wrong",
                    (int) g->len, g->body);

        } else {
            t_check(r.s.reason != NULL && r.s.error <= g->len,
                    "%.*s: no reason or error past the end",
                    (int) g->len, g->body);
        }

        t_done(&r);
    }

    t_end();
}


static void
t_errors(void)
{
    t_run_t  r;

    t_begin("error offsets and reasons");

    t_run(&r, T("{\"a\":1,\"b\":2,\"a\":3}"), 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == 13
            && strcmp(r.s.reason, "duplicate key") == 0,
            "duplicate: rc %ld at %lu", (long) r.rc,
            (unsigned long) r.s.error);
    t_check(t_span_is(r.s.open, r.s.close + 1, "{\"a\":1,\"b\":2,\"a\":3}"),
            "duplicate: open and close still set");
    t_done(&r);

    /* the first key seen twice is the one reported */
    t_run(&r, T("{\"a\":1,\"b\":2,\"b\":3,\"a\":4}"), 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == 13,
            "two duplicates: at %lu", (unsigned long) r.s.error);
    t_done(&r);

    t_run(&r, T("{\"a\":[1,2}"), 0);
    t_check(r.rc == NGX_ERROR && r.s.error == 9,
            "bracket: at %lu", (unsigned long) r.s.error);
    t_done(&r);

    t_run(&r, T("{\"a\":\"x\\qy\"}"), 0);
    t_check(r.rc == NGX_ERROR && r.s.error == 7
            && strcmp(r.s.reason, "invalid escape") == 0,
            "escape: at %lu (%s)", (unsigned long) r.s.error, r.s.reason);
    t_done(&r);

    t_run(&r, T("{\"a\":\"x"), 0);
    t_check(r.rc == NGX_ERROR && r.s.error == 7
            && strcmp(r.s.reason, "unexpected end of body") == 0,
            "end: at %lu (%s)", (unsigned long) r.s.error, r.s.reason);
    t_done(&r);

    t_run(&r, T("[1]"), 0);
    t_check(r.rc == NGX_ERROR && r.s.error == 0
            && strcmp(r.s.reason, "not a JSON object") == 0,
            "array: at %lu (%s)", (unsigned long) r.s.error, r.s.reason);
    t_done(&r);

    t_end();
}


static void
t_fields(void)
{
    t_run_t      r;
    ngx_uint_t   f;
    static char  body[] =
        "{\"model\" : \"gpt-4o\", \"stream\":true,"
        "\"stream_options\":{\"x\":[1],\"include_usage\":false},"
        "\"user\":\"u\\u0031\",\"metadata\":{\"user_id\":\"id-1\",\"n\":2},"
        "\"max_tokens\":100,\"max_completion_tokens\":-1.5e3,"
        "\"tools\":[{\"type\":\"function\"}],\"messages\":[],"
        "\"input\":null,\"system\":\"s\",\"prompt\":{},\"id\":\"resp_1\","
        "\"previous_response_id\":\"resp_0\",\"instructions\":\"be kind\"}  ";

    t_begin("fields");

    t_run(&r, (u_char *) body, sizeof(body) - 1, T_TEXTS);
    t_check(r.rc == NGX_OK, "all fields: rc %ld", (long) r.rc);

    t_field_is(&r, NGX_HTTP_AIGW_F_MODEL, "\"model\"", "\"gpt-4o\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_STREAM, "\"stream\"", "true");
    t_field_is(&r, NGX_HTTP_AIGW_F_STREAM_OPTIONS, "\"stream_options\"",
               "{\"x\":[1],\"include_usage\":false}");
    t_field_is(&r, NGX_HTTP_AIGW_F_USER, "\"user\"", "\"u\\u0031\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_METADATA, "\"metadata\"",
               "{\"user_id\":\"id-1\",\"n\":2}");
    t_field_is(&r, NGX_HTTP_AIGW_F_MAX_TOKENS, "\"max_tokens\"", "100");
    t_field_is(&r, NGX_HTTP_AIGW_F_MAX_COMPLETION_TOKENS,
               "\"max_completion_tokens\"", "-1.5e3");
    t_field_is(&r, NGX_HTTP_AIGW_F_TOOLS, "\"tools\"",
               "[{\"type\":\"function\"}]");
    t_field_is(&r, NGX_HTTP_AIGW_F_MESSAGES, "\"messages\"", "[]");
    t_field_is(&r, NGX_HTTP_AIGW_F_INPUT, "\"input\"", "null");
    t_field_is(&r, NGX_HTTP_AIGW_F_SYSTEM, "\"system\"", "\"s\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_PROMPT, "\"prompt\"", "{}");
    t_field_is(&r, NGX_HTTP_AIGW_F_ID, "\"id\"", "\"resp_1\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_PREVIOUS_RESPONSE_ID,
               "\"previous_response_id\"", "\"resp_0\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_INSTRUCTIONS, "\"instructions\"",
               "\"be kind\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_INCLUDE_USAGE, "\"include_usage\"",
               "false");
    t_field_is(&r, NGX_HTTP_AIGW_F_USER_ID, "\"user_id\"", "\"id-1\"");
    t_check(r.s.open == r.buf && r.s.close == r.buf + r.n - 3,
            "open and close");
    t_done(&r);

    /* absent fields, and the second-level ones only where they belong */
    t_run(&r, T("{\"include_usage\":true,\"user_id\":\"x\",\"Model\":1,"
                "\"a\":{\"stream_options\":{\"include_usage\":true},"
                "\"metadata\":{\"user_id\":\"no\"}},"
                "\"metadata\":{\"x\":{\"user_id\":\"no\"}},"
                "\"stream_options\":[{\"include_usage\":true}]}"), 0);
    t_check(r.rc == NGX_OK, "absent: rc %ld", (long) r.rc);

    for (f = 0; f < NGX_HTTP_AIGW_F_N; f++) {
        if (f == NGX_HTTP_AIGW_F_METADATA
            || f == NGX_HTTP_AIGW_F_STREAM_OPTIONS)
        {
            continue;
        }

        t_field_is(&r, f, NULL, NULL);
    }

    t_done(&r);

    /* escaped keys; the last second-level key wins */
    t_run(&r, T("{\"mod\\u0065l\":\"m\",\"stream_options\":{"
                "\"include_usage\":false,\"include\\u005fusage\":true},"
                "\"metadata\":{\"user_id\":1,\"user_id\":{\"a\":\"b\"}}}"),
          0);
    t_check(r.rc == NGX_OK, "escaped: rc %ld", (long) r.rc);
    t_field_is(&r, NGX_HTTP_AIGW_F_MODEL, "\"mod\\u0065l\"", "\"m\"");
    t_field_is(&r, NGX_HTTP_AIGW_F_INCLUDE_USAGE, "\"include\\u005fusage\"",
               "true");
    t_field_is(&r, NGX_HTTP_AIGW_F_USER_ID, "\"user_id\"",
               "{\"a\":\"b\"}");
    t_done(&r);

    /* names that are not the fields */
    t_run(&r, T("{\"MODEL\":1,\"model\\u0000\":2,\"model \":3,\"mode\":4,"
                "\"stream_option\":5,\"userx\":6,\"ID\":7,\"i\":8,\"ix\":9,"
                "\"previous_response_ix\":10}"), 0);
    t_check(r.rc == NGX_OK, "look-alikes: rc %ld", (long) r.rc);

    for (f = 0; f < NGX_HTTP_AIGW_F_N; f++) {
        t_field_is(&r, f, NULL, NULL);
    }

    t_done(&r);

    t_end();
}


/* every top-level key, as sent between its quotes; elements of messages */

static void
t_keys(void)
{
    char        *out;
    size_t       size;
    FILE        *f;
    t_run_t      r;
    ngx_uint_t   i, k;

    static const struct {
        const char  *body;
        const char  *keys;
        ngx_uint_t   messages;
        ngx_uint_t   input;
    } cases[] = {
        { "{}", "", 0, 0 },
        { "{\"model\":\"m\",\"messages\":[]}", "model|messages", 0, 0 },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
          "{\"role\":\"assistant\",\"content\":[{\"text\":\"b\"}]},"
          "{\"role\":\"user\",\"content\":\"c\"}],\"x\":{\"y\":1}}",
          "messages|x", 3, 0 },
        { "{\"input\":[\"a\",\"b\"],\"te\\u0073t\":[1,{\"k\":2}]}",
          "input|te\\u0073t", 0, 2 },
        { "{ \"a\" : 1 , \"b\":[ ], \"\":null }", "a|b|", 0, 0 },
        { NULL, NULL, 0, 0 }
    };

    t_begin("top-level keys and element counts");

    for (i = 0; cases[i].body; i++) {
        t_run(&r, (u_char *) cases[i].body, strlen(cases[i].body), 0);

        f = open_memstream(&out, &size);
        if (f == NULL) {
            exit(2);
        }

        for (k = 0; r.rc == NGX_OK && k < r.s.nkeys; k++) {
            if (k) {
                fputc('|', f);
            }

            fwrite(r.s.keys[k].start, 1, r.s.keys[k].end - r.s.keys[k].start,
                   f);
        }

        fclose(f);

        t_check(r.rc == NGX_OK && strcmp(out, cases[i].keys) == 0
                && r.s.messages.count == cases[i].messages
                && r.s.input.count == cases[i].input,
                "keys of %s: \"%s\", want \"%s\"; messages %lu, "
                "input %lu", cases[i].body, out, cases[i].keys,
                (unsigned long) r.s.messages.count,
                (unsigned long) r.s.input.count);

        free(out);
        t_done(&r);
    }

    t_end();
}


static void
t_duplicates(void)
{
    u_char      *s, *w;
    t_run_t      r;
    ngx_uint_t   i;

    t_begin("duplicates and key limits");

    s = t_alloc(64 * 1024);

    /* NGX_HTTP_AIGW_SCAN_KEYS keys pass, one more does not */
    w = ngx_cpymem(s, "{", 1);

    for (i = 0; i < NGX_HTTP_AIGW_SCAN_KEYS; i++) {
        w += sprintf((char *) w, "%s\"k%lu\":%lu", i ? "," : "",
                     (unsigned long) i, (unsigned long) i);
    }

    *w++ = '}';

    t_run(&r, s, w - s, 0);
    t_check(r.rc == NGX_OK, "%d keys: rc %ld", NGX_HTTP_AIGW_SCAN_KEYS,
            (long) r.rc);
    t_done(&r);

    w[-1] = ',';
    w = ngx_cpymem(w, "\"last\":1}", 9);

    t_run(&r, s, w - s, 0);
    t_check(r.rc == NGX_ERROR
            && strcmp(r.s.reason, "too many top-level keys") == 0,
            "%d keys: rc %ld", NGX_HTTP_AIGW_SCAN_KEYS + 1, (long) r.rc);
    t_done(&r);

    /* the same key last among many, and escaped */
    w = ngx_cpymem(s, "{", 1);

    for (i = 0; i < NGX_HTTP_AIGW_SCAN_KEYS - 1; i++) {
        w += sprintf((char *) w, "\"k\\u00%02x%lu\":1,", 0x40 + (int) i % 16,
                     (unsigned long) i);
    }

    w = ngx_cpymem(w, "\"kA1\":2}", 8);

    t_run(&r, s, w - s, 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == (size_t) (w - s - 8),
            "escaped among many: rc %ld at %lu", (long) r.rc,
            (unsigned long) r.s.error);
    t_done(&r);

    /*
     * keys are compared when their length and last byte meet, and all of
     * them once one has an escape: an escaped last byte, either order
     */

    t_run(&r, T("{\"a\":1,\"mode\\u006c\":2,\"b\":3,\"model\":4}"), 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == 28,
            "escaped last byte, then plain: rc %ld at %lu", (long) r.rc,
            (unsigned long) r.s.error);
    t_done(&r);

    t_run(&r, T("{\"model\":1,\"b\":2,\"mode\\u006c\":3}"), 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == 17,
            "plain, then escaped last byte: rc %ld at %lu", (long) r.rc,
            (unsigned long) r.s.error);
    t_done(&r);

    /* the same length and last byte, not the same key */

    t_run(&r, T("{\"model\":1,\"label\":2,\"usage\":3,\"image\":4}"), 0);
    t_check(r.rc == NGX_OK, "same length and last byte: rc %ld",
            (long) r.rc);
    t_done(&r);

    t_run(&r, T("{\"model\":1,\"label\":2,\"model\":3}"), 0);
    t_check(r.rc == NGX_DECLINED && r.s.error == 21,
            "a key twice among keys of its bit: rc %ld at %lu", (long) r.rc,
            (unsigned long) r.s.error);
    t_done(&r);

    /* many keys inside nested objects are not limited */
    w = ngx_cpymem(s, "{\"a\":{", 6);

    for (i = 0; i < 1000; i++) {
        w += sprintf((char *) w, "%s\"k%lu\":1", i ? "," : "",
                     (unsigned long) i);
    }

    w = ngx_cpymem(w, "}}", 2);

    t_run(&r, s, w - s, 0);
    t_check(r.rc == NGX_OK, "1000 nested keys: rc %ld", (long) r.rc);
    t_done(&r);

    free(s);

    t_end();
}


static void
t_depth_one(const char *open, const char *close, ngx_uint_t levels,
    ngx_int_t want)
{
    u_char      *s, *w;
    t_run_t      r;
    ngx_uint_t   i;

    s = t_alloc(16 * levels + 16);
    w = ngx_cpymem(s, "{\"a\":", 5);

    /* the top-level object is the first of the levels */
    for (i = 1; i < levels; i++) {
        w = ngx_cpymem(w, open, strlen(open));
    }

    w = ngx_cpymem(w, "1", 1);

    for (i = 1; i < levels; i++) {
        w = ngx_cpymem(w, close, strlen(close));
    }

    *w++ = '}';

    t_run(&r, s, w - s, 0);
    t_check(r.rc == want, "%lu levels of %s: rc %ld, want %ld",
            (unsigned long) levels, open, (long) r.rc, (long) want);

    if (want == NGX_ERROR) {
        t_check(r.rc == NGX_ERROR
                && strcmp(r.s.reason, "nested too deeply") == 0,
                "%lu levels: reason %s", (unsigned long) levels,
                r.s.reason ? r.s.reason : "-");
    }

    t_done(&r);
    free(s);
}


static void
t_depth(void)
{
    t_begin("nesting limit");

    t_depth_one("[", "]", NGX_HTTP_AIGW_SCAN_DEPTH, NGX_OK);
    t_depth_one("[", "]", NGX_HTTP_AIGW_SCAN_DEPTH + 1, NGX_ERROR);
    t_depth_one("{\"b\":", "}", NGX_HTTP_AIGW_SCAN_DEPTH, NGX_OK);
    t_depth_one("{\"b\":", "}", NGX_HTTP_AIGW_SCAN_DEPTH + 1, NGX_ERROR);
    t_depth_one("[{\"b\":", "}]", NGX_HTTP_AIGW_SCAN_DEPTH / 2, NGX_OK);
    t_depth_one("[{\"b\":", "}]", NGX_HTTP_AIGW_SCAN_DEPTH / 2 + 1,
                NGX_ERROR);
    t_depth_one("[", "]", 100000, NGX_ERROR);

    t_end();
}


static void
t_text(void)
{
    char        *got;
    t_run_t      r;
    t_text_t    *t;
    ngx_uint_t   i, n;

    t_begin("text spans");

    for (t = t_texts; t->body; t++) {
        t_run(&r, t->body, t->len, T_TEXTS);
        got = t_join(&r);

        n = (*t->texts == '\0') ? 0 : 1;

        for (i = 0; t->texts[i]; i++) {
            n += (t->texts[i] == '|');
        }

        t_check(r.rc == NGX_OK && strcmp(got, t->texts) == 0
                && r.s.ntext == n,
                "%.*s: texts \"%s\" (%lu), want \"%s\"", (int) t->len,
                t->body, got, (unsigned long) r.s.ntext, t->texts);

        free(got);
        t_done(&r);
    }

    /* more spans than room: all counted, the first stored */
    t_run(&r, T("{\"messages\":[{\"content\":\"1\"},{\"content\":\"2\"},"
                "{\"content\":[{\"text\":\"3\"},\"4\"]}],\"system\":\"5\"}"),
          2);
    got = t_join(&r);
    t_check(r.rc == NGX_OK && r.s.ntext == 5 && strcmp(got, "1|2") == 0,
            "overflow: %lu spans, stored \"%s\"", (unsigned long) r.s.ntext,
            got);
    free(got);
    t_done(&r);

    /* an empty text is a span too */
    t_run(&r, T("{\"system\":\"\"}"), 1);
    t_check(r.rc == NGX_OK && r.s.ntext == 1
            && r.text[0].start == r.text[0].end,
            "empty text: %lu spans", (unsigned long) r.s.ntext);
    t_done(&r);

    /* no room at all */
    t_run(&r, T("{\"messages\":[{\"content\":\"1\"}],\"prompt\":\"2\"}"), 0);
    t_check(r.rc == NGX_OK && r.s.ntext == 2, "no storage: %lu spans",
            (unsigned long) r.s.ntext);
    t_done(&r);

    t_end();
}


static void t_prefixes(const char *what, const u_char *s, size_t n,
    size_t close);


static void
t_checks(void)
{
    u_char      *body;
    size_t       pad, n;
    t_run_t      r;
    t_check_t   *c;
    ngx_uint_t   text_size;

    t_begin("checks: messages, input, prompt, text");

    for (c = t_checks_table; c->body; c++) {

        /*
         * whole, after 0 to 40 spaces (the byte loop, the vector loop and
         * the body's last 16 bytes each meet the checks), with and
         * without room for the spans; then every prefix
         */

        for (pad = 0; pad <= 40; pad++) {
            for (text_size = 0; text_size <= T_TEXTS; text_size += T_TEXTS) {
                n = pad + c->len;
                body = malloc(n);
                memset(body, ' ', pad);
                memcpy(body + pad, c->body, c->len);

                t_run(&r, body, n, text_size);
                free(body);

                t_check(r.rc == NGX_OK
                        && r.s.messages.error == c->messages
                        && (c->messages == NGX_HTTP_AIGW_SHAPE_OK
                            || (r.s.messages.index == c->index
                                && (c->value
                                    ? r.s.messages.value != NULL
                                      && *r.s.messages.value == c->value
                                    : r.s.messages.value == NULL)))
                        && r.s.input.error == c->input
                        && r.s.prompt.error == c->prompt
                        && r.s.text_error == c->text
                        && (c->text == NGX_HTTP_AIGW_TEXT_OK
                            || r.s.text_field == c->field),
                        "%.*s (pad %lu): rc %ld, messages %lu [%lu], input "
                        "%lu, prompt %lu, text %lu in %lu", (int) c->len,
                        c->body, (unsigned long) pad, (long) r.rc,
                        (unsigned long) r.s.messages.error,
                        (unsigned long) r.s.messages.index,
                        (unsigned long) r.s.input.error,
                        (unsigned long) r.s.prompt.error,
                        (unsigned long) r.s.text_error,
                        (unsigned long) r.s.text_field);

                t_done(&r);
            }
        }

        t_prefixes((char *) c->body, c->body, c->len, c->len - 1);
    }

    t_end();
}


/*
 * An answer's usage counts, read by the scan as it checks the answer:
 * each format's usage object, and what must not count
 */

typedef struct {
    const char                 *body;
    ngx_uint_t                  n[NGX_HTTP_AIGW_U_N];
} t_usage_t;


#define T_U  NGX_HTTP_AIGW_USAGE_UNSET

static t_usage_t  t_usages[] = {

    /* OpenAI chat completions, with details */
    { "{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
      "\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":52,"
      "\"total_tokens\":93,\"prompt_tokens_details\":{\"cached_tokens\":7,"
      "\"audio_tokens\":0},\"completion_tokens_details\":"
      "{\"reasoning_tokens\":3,\"audio_tokens\":0}},\"x\":1}",
      { T_U, T_U, T_U, T_U, 41, 52, 7, 3 } },

    /* Anthropic messages */
    { "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}],"
      "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"
      "\"cache_read_input_tokens\":50,\"cache_creation\":"
      "{\"ephemeral_5m_input_tokens\":100},\"output_tokens\":1,"
      "\"service_tier\":\"standard\"}}",
      { 25, 1, 50, 100, T_U, T_U, T_U, T_U } },

    /* OpenAI Responses */
    { "{\"object\":\"response\",\"output\":[],\"usage\":{\"input_tokens\":9,"
      "\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":4,"
      "\"output_tokens_details\":{\"reasoning_tokens\":1},"
      "\"total_tokens\":13}}",
      { 9, 4, T_U, T_U, T_U, T_U, 2, 1 } },

    /* OpenAI embeddings */
    { "{\"object\":\"list\",\"data\":[{\"embedding\":[0.1,-2e-3]}],"
      "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}",
      { T_U, T_U, T_U, T_U, 8, T_U, T_U, T_U } },

    /* blanks everywhere; a key whose value is no number; the last wins */
    { "{ \"usage\" : { \"prompt_tokens\" : 5 , \"completion_tokens\":\n6,"
      "\t\"cached_tokens\"\t:\t[7], \"reasoning_tokens\": {\"x\":8},"
      " \"prompt_tokens\":9 } }",
      { T_U, T_U, T_U, T_U, 9, 6, T_U, T_U } },

    /* negative, fraction, exponent, huge: as the usage reader reads them */
    { "{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":12.9,"
      "\"cached_tokens\":3e2,\"reasoning_tokens\":123456789012345}}",
      { T_U, T_U, T_U, T_U, T_U, 12, 3, 12345678901 } },

    /* escaped keys never match; strings are no counts */
    { "{\"usage\":{\"prompt\\u005ftokens\":5,\"completion_tokens\":\"6\","
      "\"output_tokens\":null}}",
      { T_U, T_U, T_U, T_U, T_U, T_U, T_U, T_U } },

    /* any depth, in arrays too */
    { "{\"usage\":{\"a\":[{\"b\":{\"prompt_tokens\":1}}],\"c\":[[2]]}}",
      { T_U, T_U, T_U, T_U, 1, T_U, T_U, T_U } },

    /* only the top-level "usage": not one nested, not another key's */
    { "{\"choices\":[{\"usage\":{\"prompt_tokens\":1}}],\"prompt_tokens\":2,"
      "\"usage\":{\"completion_tokens\":3},\"usages\":{\"prompt_tokens\":4}}",
      { T_U, T_U, T_U, T_U, T_U, 3, T_U, T_U } },

    /* an empty one */
    { "{\"usage\":{}}",
      { T_U, T_U, T_U, T_U, T_U, T_U, T_U, T_U } }
};

#undef T_U


static void
t_usage(void)
{
    size_t       n;
    t_run_t      r;
    ngx_uint_t   i, k, same;
    t_usage_t   *c;

    t_begin("usage counts");

    for (i = 0; i < sizeof(t_usages) / sizeof(t_usage_t); i++) {
        c = &t_usages[i];
        n = strlen(c->body);

        t_run(&r, (u_char *) c->body, n, 0);

        same = (r.rc == NGX_OK && r.s.field[NGX_HTTP_AIGW_F_USAGE].key);

        for (k = 0; same && k < NGX_HTTP_AIGW_U_N; k++) {
            same = (r.s.usage.n[k] == c->n[k]);
        }

        t_check(same, "usage counts of \"%.*s\"", (int) ngx_min(n, 60),
                c->body);

        t_done(&r);

        /* every cut of it fails, none reads past its end */
        t_prefixes(c->body, (u_char *) c->body, n,
                   strrchr(c->body, '}') - c->body);
    }

    /* an answer without usage: the counts are not looked at */

    t_run(&r, T("{\"id\":\"x\",\"usage\":null}"), 0);
    t_check(r.rc == NGX_OK && r.s.field[NGX_HTTP_AIGW_F_USAGE].key
            && *r.s.field[NGX_HTTP_AIGW_F_USAGE].start == 'n',
            "a null usage");
    t_done(&r);

    /* a valid answer's "usage" with a bad value inside fails it */

    t_run(&r, T("{\"usage\":{\"prompt_tokens\":tru}}"), 0);
    t_check(r.rc == NGX_ERROR, "a broken usage object");
    t_done(&r);

    t_run(&r, T("{\"choices\":[tru],\"usage\":{\"prompt_tokens\":1}}"), 0);
    t_check(r.rc == NGX_ERROR, "a broken answer with usage");
    t_done(&r);

    t_end();
}


static void
t_bytes(void)
{
    t_run_t  r;

    t_begin("string bytes");

#define t_bytes_is(body, want)                                               \
    t_run(&r, T(body), 0);                                                   \
    t_check(r.rc == NGX_OK && r.s.string_bytes == (want),                    \
            "%s: %lu bytes, want %lu", body,                                 \
            (unsigned long) r.s.string_bytes, (unsigned long) (want));       \
    t_done(&r)

    t_bytes_is("{}", 0);
    t_bytes_is("{\"model\":\"gpt-4o\",\"a\":\"abc\"}", 3);
    t_bytes_is("{\"model\":[\"ab\",{\"c\":\"d\"}],\"e\":\"f\"}", 1);
    t_bytes_is("{\"x\":{\"model\":\"abc\"}}", 3);
    t_bytes_is("{\"keys\":1,\"are\":{\"not\":2}}", 0);
    t_bytes_is("{\"a\":[\"\",\"x\",\"yz\"]}", 3);
    t_bytes_is("{\"a\":\"\\n\\\"\\\\\\/\\b\\f\\r\\t\"}", 8);
    t_bytes_is("{\"a\":\"\\u0041\\u00e9\\u20ac\"}", 6);
    t_bytes_is("{\"a\":\"\\ud83d\\ude00\"}", 4);
    t_bytes_is("{\"a\":\"\\ud83d\"}", 3);
    t_bytes_is("{\"a\":\"\\ude00\\ud83d\"}", 6);
    t_bytes_is("{\"a\":\"\\ud83d\\u0041\"}", 4);
    t_bytes_is("{\"a\":\"\\u0000\"}", 1);
    t_bytes_is("{\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\"}", 6);
    t_bytes_is("{\"mod\\u0065l\":\"skipped\",\"b\":\"c\"}", 1);

#undef t_bytes_is

    /* the old cJSON count, on bodies cJSON takes */
    t_against_cjson("escapes", T("{\"a\":\"\\u0041\\u00e9\\u20ac\\ud83d"
                                  "\\ude00\\n\\\"\",\"model\":\"m\"}"));
    t_against_cjson("utf-8", T("{\"a\":[\"\xc3\xa9\",{\"b\":\"c\"}]}"));

    t_end();
}


static void
t_unescape(void)
{
    u_char        *in, *out, *end;
    size_t         n;
    t_run_t        r;
    t_unescape_t  *u;

    t_begin("unescape and equal");

    for (u = t_unescapes; u->in; u++) {
        in = t_dup(u->in, u->in_len);
        out = t_alloc(u->in_len);

        end = ngx_http_aigw_scan_unescape(out, in, in + u->in_len);
        n = end - out;

        t_check(n == u->out_len && memcmp(out, u->out, n) == 0,
                "unescape \"%.*s\": %lu bytes, want %lu", (int) u->in_len,
                u->in, (unsigned long) n, (unsigned long) u->out_len);

        t_check(ngx_http_aigw_scan_equal(in, in + u->in_len, u->out,
                                         u->out_len),
                "equal \"%.*s\"", (int) u->in_len, u->in);

        if (u->out_len) {
            t_check(!ngx_http_aigw_scan_equal(in, in + u->in_len, u->out,
                                              u->out_len - 1),
                    "equal \"%.*s\" to a prefix", (int) u->in_len, u->in);
        }

        t_check(!ngx_http_aigw_scan_equal(in, in + u->in_len,
                                          (u_char *) "xyzzy-xyzzy", 11),
                "equal \"%.*s\" to another", (int) u->in_len, u->in);

        /* the scan counts what unescape writes */
        out = realloc(out, u->in_len + 8);
        memcpy(out, "{\"a\":\"", 6);
        memcpy(out + 6, u->in, u->in_len);
        memcpy(out + 6 + u->in_len, "\"}", 2);

        t_run(&r, out, u->in_len + 8, 0);
        t_check(r.rc == NGX_OK && r.s.string_bytes == u->out_len,
                "scan of \"%.*s\": %lu bytes, want %lu", (int) u->in_len,
                u->in, (unsigned long) r.s.string_bytes,
                (unsigned long) u->out_len);
        t_done(&r);

        free(in);
        free(out);
    }

    /* unescape is total: what the scan rejects comes out byte by byte */
    in = t_dup(T("\\x\\u12g4\\ud800\\u"));
    out = t_alloc(16);
    end = ngx_http_aigw_scan_unescape(out, in, in + 16);
    t_check(t_span_is(out, end, "\\x\\u12g4\xef\xbf\xbd\\u"),
            "invalid escapes: \"%.*s\"", (int) (end - out), out);
    free(out);
    free(in);

    in = t_dup(T("a\\"));
    out = t_alloc(2);
    end = ngx_http_aigw_scan_unescape(out, in, in + 2);
    t_check(t_span_is(out, end, "a\\"), "a trailing backslash");
    t_check(ngx_http_aigw_scan_equal(in, in + 2, (u_char *) "a\\", 2),
            "equal with a trailing backslash");
    free(out);
    free(in);

    t_end();
}


static void
t_expect(t_expect_t *x, t_run_t *r)
{
    ngx_uint_t  f, n;

    t_check(r->s.ntext == x->ntext || (x->ntext == 0 && r->s.ntext > 60),
            "%s: %lu texts, want %lu", x->file, (unsigned long) r->s.ntext,
            (unsigned long) x->ntext);

    n = ngx_min(r->s.ntext, r->s.text_size);

    if (x->first) {
        t_check(n && (size_t) (r->text[0].end - r->text[0].start)
                     >= strlen(x->first)
                && memcmp(r->text[0].start, x->first, strlen(x->first)) == 0,
                "%s: first text \"%.*s\"", x->file,
                n ? (int) (r->text[0].end - r->text[0].start) : 0,
                n ? (char *) r->text[0].start : "");
    }

    if (x->last && n == r->s.ntext) {
        t_check(n && t_span_is(r->text[n - 1].start, r->text[n - 1].end,
                               x->last),
                "%s: last text \"%.*s\"", x->file,
                n ? (int) (r->text[n - 1].end - r->text[n - 1].start) : 0,
                n ? (char *) r->text[n - 1].start : "");
    }

    for (f = 0; f < NGX_HTTP_AIGW_F_N; f++) {
        t_check(((x->fields >> f) & 1) == (r->s.field[f].key != NULL),
                "%s: field %lu %s", x->file, (unsigned long) f,
                r->s.field[f].key ? "present" : "absent");
    }
}


/* what any NGX_OK result must hold: spans inside the body, in order */

static void
t_sane(const char *what, t_run_t *r)
{
    u_char                 *prev;
    ngx_uint_t              i, n;
    ngx_http_aigw_field_t  *f;

    for (i = 0; i < NGX_HTTP_AIGW_F_N; i++) {
        f = &r->s.field[i];

        if (f->key == NULL) {
            continue;
        }

        t_check(f->key >= r->buf && f->key < f->start && f->start < f->end
                && f->end <= r->buf + r->n && *f->key == '"',
                "%s: field %lu out of place", what, (unsigned long) i);
    }

    n = ngx_min(r->s.ntext, r->s.text_size);
    prev = r->buf;

    for (i = 0; i < n; i++) {
        t_check(r->text[i].start >= prev + 1
                && r->text[i].start <= r->text[i].end
                && r->text[i].end < r->buf + r->n
                && r->text[i].start[-1] == '"' && *r->text[i].end == '"',
                "%s: text %lu out of place", what, (unsigned long) i);

        prev = r->text[i].end;
    }
}


/*
 * A whole body is read at once, so "every split point" is every prefix:
 * each must be rejected, but for those that only lack trailing whitespace.
 */

static void
t_prefixes(const char *what, const u_char *s, size_t n, size_t close)
{
    size_t      k, bad;
    t_run_t     r;
    ngx_int_t   want;

    bad = 0;

    for (k = 0; k < n; k++) {
        t_run(&r, s, k, 0);
        want = (k > close) ? NGX_OK : NGX_ERROR;

        if (r.rc != want) {
            if (bad++ == 0) {
                t_check(0, "%s: prefix of %lu bytes: rc %ld, want %ld", what,
                        (unsigned long) k, (long) r.rc, (long) want);
            }
        }

        t_done(&r);
    }

    t_check(bad == 0, "%s: %lu of %lu prefixes wrong", what,
            (unsigned long) bad, (unsigned long) n);
}


static int
t_cmp_names(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


static void
t_fixtures(const char *dir)
{
    DIR            *d;
    char           *names[256];
    u_char         *s;
    size_t          n, len;
    t_run_t         r;
    ngx_uint_t      i, nnames;
    t_expect_t     *x;
    struct dirent  *de;

    t_begin("fixtures: whole, every prefix, against cJSON");

    d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", dir);
        exit(2);
    }

    nnames = 0;

    while ((de = readdir(d)) != NULL && nnames < 256) {
        len = strlen(de->d_name);

        if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0) {
            names[nnames++] = strdup(de->d_name);
        }
    }

    closedir(d);

    qsort(names, nnames, sizeof(char *), t_cmp_names);

    for (x = t_expects; x->file; x++) {
        for (i = 0; i < nnames; i++) {
            if (strcmp(names[i], x->file) == 0) {
                break;
            }
        }

        t_check(i < nnames, "fixture %s missing", x->file);
    }

    for (i = 0; i < nnames; i++) {
        s = t_read(dir, names[i], &n);

        if (s == NULL) {
            fprintf(stderr, "cannot read %s/%s\n", dir, names[i]);
            exit(2);
        }

        t_run(&r, s, n, T_TEXTS);

        if (t_check(r.rc == NGX_OK, "%s: rc %ld (%s at %lu)", names[i],
                    (long) r.rc, r.s.reason ? r.s.reason : "-",
                    (unsigned long) r.s.error))
        {
            t_sane(names[i], &r);

            for (x = t_expects; x->file; x++) {
                if (strcmp(x->file, names[i]) == 0) {
                    t_expect(x, &r);
                }
            }

            t_prefixes(names[i], s, n, r.s.close - r.buf);
        }

        t_done(&r);

        /* cJSON rejects lone surrogates, which RFC 8259 allows */
        if (ngx_strncmp(names[i], "lone_", 5) != 0) {
            t_against_cjson(names[i], s, n);
        }

        free(s);
        free(names[i]);
    }

    t_end();
}


/* random documents: valid, sane, counted as cJSON counts, prefixes fail */

static void
t_gen_string(FILE *f, uint64_t *seed)
{
    ngx_uint_t         i, n;
    static const char *pieces[] = {
        "a", "hello world", " ", "\\n", "\\\"", "\\\\", "\\/", "\\t",
        "\\u00e9", "\\u20AC", "\\ud83d\\ude00", "\\u0041", "\xc3\xa9",
        "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "0123456789abcdefghijklmnop",
        "\\b\\f\\r", "{}[],:"
    };

    fputc('"', f);

    n = t_rand(seed) % 6;

    for (i = 0; i < n; i++) {
        fputs(pieces[t_rand(seed) % (sizeof(pieces) / sizeof(char *))], f);
    }

    fputc('"', f);
}


static void
t_gen_value(FILE *f, uint64_t *seed, ngx_uint_t depth)
{
    ngx_uint_t         i, n, kind;
    static const char *keys[] = {
        "\"content\"", "\"text\"", "\"role\"", "\"type\"", "\"cont\\u0065nt\"",
        "\"input\"", "\"x\"", "\"\""
    };
    static const char *scalars[] = {
        "0", "-1", "3.25", "1e10", "-0.5E-3", "true", "false", "null",
        "12345678901234567890"
    };

    kind = t_rand(seed) % (depth > 5 ? 2 : 4);

    switch (kind) {

    case 0:
        t_gen_string(f, seed);
        break;

    case 1:
        fputs(scalars[t_rand(seed) % (sizeof(scalars) / sizeof(char *))], f);
        break;

    case 2:
        fputc('[', f);
        n = t_rand(seed) % 4;

        for (i = 0; i < n; i++) {
            fputs(i ? ", " : "", f);
            t_gen_value(f, seed, depth + 1);
        }

        fputc(']', f);
        break;

    default:
        fputc('{', f);
        n = t_rand(seed) % 4;

        for (i = 0; i < n; i++) {
            fputs(i ? "," : "", f);
            fputs(keys[t_rand(seed) % (sizeof(keys) / sizeof(char *))], f);
            fputs(" :", f);
            t_gen_value(f, seed, depth + 1);
        }

        fputc('}', f);
        break;
    }
}


static void
t_random(void)
{
    char        *body;
    size_t       size;
    FILE        *f;
    uint64_t     seed;
    t_run_t      r;
    ngx_uint_t   i, j, n;
    static const char *top[] = {
        "model", "messages", "input", "system", "prompt", "tools", "user",
        "metadata", "stream_options", "instructions", "k1", "k2", "k3"
    };

    t_begin("random documents");

    seed = 20261130;

    for (i = 0; i < 2000; i++) {
        f = open_memstream(&body, &size);
        if (f == NULL) {
            exit(2);
        }

        fputc('{', f);
        n = t_rand(&seed) % 8;

        /* distinct top-level keys: a rotation of the list */
        for (j = 0; j < n; j++) {
            fprintf(f, "%s\"%s\":", j ? "," : "",
                    top[(i + j) % (sizeof(top) / sizeof(char *))]);
            t_gen_value(f, &seed, 1);
        }

        fputs("}", f);
        fclose(f);

        t_run(&r, (u_char *) body, size, T_TEXTS);

        if (t_check(r.rc == NGX_OK, "random %lu: rc %ld (%s at %lu): %s",
                    (unsigned long) i, (long) r.rc,
                    r.s.reason ? r.s.reason : "-",
                    (unsigned long) r.s.error, body))
        {
            t_sane("random", &r);
        }

        t_done(&r);

        t_against_cjson("random", (u_char *) body, size);

        if (i % 10 == 0) {
            t_prefixes("random", (u_char *) body, size, size - 1);
        }

        free(body);
    }

    t_end();
}


static double
t_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
t_speed(const char *dir)
{
    u_char      *s;
    size_t       n;
    double       t;
    t_run_t      r;
    ngx_uint_t   i;

    t_begin("speed");

    s = t_read(dir, "conversation_50k.json", &n);

    if (t_check(s != NULL, "no conversation_50k.json")) {
        t_reference = 0;
        t = t_now();

        for (i = 0; i < 200; i++) {
            t_run(&r, s, n, T_TEXTS);
            t_check(r.rc == NGX_OK, "rc %ld", (long) r.rc);
            t_done(&r);
        }

        t = t_now() - t;
        t_reference = 1;

        printf("#   conversation_50k.json: 200 scans, %.0f MB/s\n",
               t > 0 ? (200.0 * n / 1048576.0) / t : 0.0);

        free(s);
    }

    t_end();
}


int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <fixture directory>\n", argv[0]);
        return 2;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);

    t_grammars();
    t_errors();
    t_fields();
    t_duplicates();
    t_keys();
    t_depth();
    t_text();
    t_checks();
    t_usage();
    t_bytes();
    t_unescape();
    t_fixtures(argv[1]);
    t_random();
    t_speed(argv[1]);

    printf("%lu passed, %lu failed\n", (unsigned long) t_passed,
           (unsigned long) t_failed);

    return t_failed ? 1 : 0;
}
