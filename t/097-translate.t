# Translation: a client speaking OpenAI's chat completions served by an
# Anthropic provider, and an Anthropic client served by an OpenAI one.
# Each case compares the exact request the provider got, and the answer
# or error the client got back; a parameter with no counterpart is a 400
# naming it.  Plain Test::More: it reads what the mock received.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwMock;

use AigwNginx;

use JSON::PP;
use Test::More;

my $ngx = AigwNginx->new;
my $dir = $ngx->dir;
my $port = $ngx->port;
my $module = $ngx->module;

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless $module;

my $mock = $ENV{TEST_NGINX_MOCK_PORT};

$ngx->write_conf(<<"EOC");
load_module $module;
master_process off;
daemon off;
error_log $dir/logs/error.log info;
pid $dir/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/body;
    log_format t '\$aigw_provider \$aigw_prompt_tokens \$aigw_completion_tokens '
                 '\$aigw_cost \$status';
    access_log $dir/logs/access.log t;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_provider claude429 http://127.0.0.1:$mock/fault/status=429/v1
                  format=anthropic;
    aigw_provider claude400 http://127.0.0.1:$mock/fault/status=400/v1
                  format=anthropic;
    aigw_provider claude502 http://127.0.0.1:$mock/fault/status=502/v1
                  format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model haiku claude:claude-3-5-haiku input=1.00 output=5.00;
    aigw_model busy claude429:claude-3-5-haiku;
    aigw_model picky claude400:claude-3-5-haiku;
    aigw_model broken claude502:claude-3-5-haiku;
    aigw_route claude-then-gpt busy gpt-4o;
    aigw_route gpt-or-claude gpt-4o haiku;
    aigw_provider ok429 http://127.0.0.1:$mock/fault/status=429/v1;
    aigw_model gpt-busy ok429:gpt-4o;
    aigw_route gpt-then-claude gpt-busy haiku;
    server {
        listen 127.0.0.1:$port;
        location /v1/ {
            aigw_pass;
        }
        location /small/v1/ {
            aigw_translate_max_tokens 100;
            aigw_pass;
        }
        location /tiny/v1/ {
            aigw_answer_buffer 64;
            aigw_pass;
        }
        location /pii/v1/ {
            aigw_pii redact email;
            aigw_pii restore;
            aigw_pass;
        }
        location /_mock/ {
            proxy_pass http://127.0.0.1:$mock;
        }
    }
}
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

my $json = JSON::PP->new->canonical;

sub provider_got {
    my ($body, $path) = @_;
    $ngx->request('POST', '/_mock/reset', {}, '');
    my $res = $ngx->request('POST', $path // '/v1/chat/completions', {},
                            $body);
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    my $got = $last->{status} == 200
        ? JSON::PP->new->decode($last->{body}) : {};
    return ($res, $got);
}

# the simplest: text, system, a default max_tokens

my ($res, $got) = provider_got('{"model":"haiku","messages":['
    . '{"role":"system","content":"Be brief."},'
    . '{"role":"user","content":"hello there"}]}');

is($res->{status}, 200, 'a chat completion served by Anthropic: 200');
is($got->{path}, '/v1/messages', 'the provider is asked for a message');
is($got->{headers}{'anthropic-version'}, '2023-06-01',
   'with its anthropic-version');
is($got->{body}, '{"model":"claude-3-5-haiku","max_tokens":4096,'
   . '"messages":[{"role":"user","content":"hello there"}],'
   . '"system":[{"type":"text","text":"Be brief."}]}',
   'the Messages request, byte for byte');

my $a = eval { decode_json($res->{body}) } || {};
is($a->{object}, 'chat.completion', 'the answer is a chat completion');
is($a->{model}, 'haiku', 'named as the client asked');
like($a->{id}, qr/^msg_/, "the provider's id");
is($a->{choices}[0]{message}{role}, 'assistant', 'an assistant message');
is($a->{choices}[0]{message}{content}, 'Mock answer to: hello there',
   'its text');
is($a->{choices}[0]{finish_reason}, 'stop', 'end_turn is stop');
is($a->{usage}{prompt_tokens}, 5, 'prompt tokens');
is($a->{usage}{completion_tokens}, 7, 'completion tokens');
is($a->{usage}{total_tokens}, 12, 'total');
like($res->{headers}, qr/^Content-Length: \Q@{[length $res->{body}]}\E\r$/mi,
     'Content-Length of the rewritten answer');

# everything that maps

($res, $got) = provider_got('{"model":"haiku","max_completion_tokens":50,'
    . '"temperature":0.5,"top_p":0.9,"stop":"END","user":"u-1",'
    . '"n":1,"presence_penalty":0,"logprobs":false,"seed":7,'
    . '"stream_options":null,"response_format":{"type":"text"},'
    . '"parallel_tool_calls":false,'
    . '"tools":[{"type":"function","function":{"name":"get_weather",'
    . '"description":"The weather","parameters":{"type":"object",'
    . '"properties":{"city":{"type":"string"}}}}}],'
    . '"tool_choice":{"type":"function","function":{"name":"get_weather"}},'
    . '"messages":[{"role":"developer","content":[{"type":"text",'
    . '"text":"Dev \u00e9"}]},'
    . '{"role":"user","content":[{"type":"text","text":"a"},'
    . '{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO\/w=="}},'
    . '{"type":"image_url","image_url":{"url":"https://x.test/a.png","detail":"low"}}]},'
    . '{"role":"assistant","content":null,"tool_calls":[{"id":"call_1",'
    . '"type":"function","function":{"name":"get_weather",'
    . '"arguments":"{\"city\":\"Paris\"}"}}]},'
    . '{"role":"tool","tool_call_id":"call_1","content":"sunny"},'
    . '{"role":"assistant","content":"It is sunny."},'
    . '{"role":"user","content":"thanks"}]}');

is($res->{status}, 200, 'every mapped field: 200');
is($got->{body}, '{"model":"claude-3-5-haiku","temperature":0.5,'
   . '"top_p":0.9,"stop_sequences":["END"],'
   . '"tools":[{"name":"get_weather","description":"The weather",'
   . '"input_schema":{"type":"object","properties":{"city":'
   . '{"type":"string"}}}}],"max_tokens":50,'
   . '"metadata":{"user_id":"u-1"},'
   . '"tool_choice":{"type":"tool","name":"get_weather",'
   . '"disable_parallel_tool_use":true},'
   . '"messages":[{"role":"user","content":[{"type":"text","text":"a"},'
   . '{"type":"image","source":{"type":"base64","media_type":"image/png",'
   . '"data":"iVBO/w=="}},{"type":"image","source":{"type":"url",'
   . '"url":"https://x.test/a.png"}}]},'
   . '{"role":"assistant","content":[{"type":"tool_use","id":"call_1",'
   . '"name":"get_weather","input":{"city":"Paris"}}]},'
   . '{"role":"user","content":[{"type":"tool_result",'
   . '"tool_use_id":"call_1","content":"sunny"}]},'
   . '{"role":"assistant","content":"It is sunny."},'
   . '{"role":"user","content":"thanks"}],'
   . '"system":[{"type":"text","text":"Dev \u00e9"}]}',
   'every mapped field, byte for byte');

($res, $got) = provider_got('{"model":"haiku","messages":'
    . '[{"role":"user","content":"hi"}]}', '/small/v1/chat/completions');
like($got->{body}, qr/"max_tokens":100,/, 'aigw_translate_max_tokens');

# what has no counterpart: a 400 naming it, no provider call

for my $case (['"n":2', 'n'], ['"temperature":1.5', 'temperature'],
              ['"frequency_penalty":0.5', 'frequency_penalty'],
              ['"logprobs":true', 'logprobs'],
              ['"response_format":{"type":"json_object"}', 'response_format'],
              ['"logit_bias":{"50256":-100}', 'logit_bias'],
              ['"audio":{"voice":"x"}', 'audio'],
              ['"reasoning_effort":"low"', 'reasoning_effort'],
              ['"x_unknown":1', 'x_unknown'])
{
    my ($field, $name) = @$case;
    ($res, $got) = provider_got('{"model":"haiku",' . $field
                                . ',"messages":[{"role":"user","content":"hi"}]}');
    is($res->{status}, 400, "$name: 400");
    like($res->{body},
         qr/^\{"error":\{"message":"'\Q$name\E' cannot be translated for `haiku`, served in the anthropic format: .+?\.","type":"invalid_request_error","param":null,"code":"unsupported_parameter"\}\}$/,
         "$name: named, in OpenAI's words");
    ok(!$got->{path}, "$name: no provider was asked");
}

($res, $got) = provider_got('{"model":"haiku","messages":[{"role":"user",'
    . '"content":[{"type":"input_audio","input_audio":{"data":"x"}}]}]}');
is($res->{status}, 400, 'an audio part: 400');
like($res->{body}, qr/'messages' cannot be translated.*audio/,
     'it says what of the messages');

($res, $got) = provider_got('{"model":"haiku","messages":[{"role":"assistant",'
    . '"tool_calls":[{"id":"c","type":"function","function":{"name":"f",'
    . '"arguments":"not json"}}]}]}');
is($res->{status}, 400, 'arguments that are not JSON: 400');

# a route: the candidates that cannot take it are left out

($res, $got) = provider_got('{"model":"gpt-or-claude","n":2,'
    . '"messages":[{"role":"user","content":"hi"}]}');
is($res->{status}, 200, 'n=2 on a route with an OpenAI candidate: served');
is($got->{path}, '/v1/chat/completions', 'by the OpenAI candidate');

# fallback across formats

($res, $got) = provider_got('{"model":"claude-then-gpt","messages":'
    . '[{"role":"user","content":"hello there"}]}');
is($res->{status}, 200, 'Anthropic 429, then OpenAI: 200');
is($got->{path}, '/v1/chat/completions', 'the OpenAI provider answered');
like($got->{body}, qr/^\{"model":"gpt-4o","messages":/,
     'with the client\'s own body');

# what the steps spliced in is what is translated: the provider never
# gets personal data, whatever its format

($res, $got) = provider_got('{"model":"haiku","messages":'
    . '[{"role":"user","content":"mail bob@example.com"}]}',
    '/pii/v1/chat/completions');
is($res->{status}, 200, 'PII redacted, then translated: 200');
like($got->{body}, qr/"content":"mail \[EMAIL_1\]"/,
     'the provider gets the placeholder');
unlike($got->{body}, qr/bob\@example/, 'never the address');
like($res->{body}, qr/"content":"Mock answer to: mail bob\@example\.com"/,
     'and the client gets its value back, in a chat completion');

# the issue's case: an OpenAI client, its first candidate OpenAI's, the
# second Anthropic's, the body rebuilt for it

($res, $got) = provider_got('{"model":"gpt-then-claude","messages":'
    . '[{"role":"user","content":"hello there"}]}');
is($res->{status}, 200, 'OpenAI 429, then Anthropic, for an OpenAI client');
is($got->{path}, '/v1/messages', 'the Anthropic provider answered');
like($got->{body}, qr/^\{"model":"claude-3-5-haiku","max_tokens":4096,"messages":/,
     'with the body rebuilt as a Messages request');
like($res->{body}, qr/^\{"id":"msg_[^"]+","object":"chat\.completion"/,
     'and the client got a chat completion');

# the provider's errors in the client's words

($res, $got) = provider_got('{"model":"picky","messages":'
    . '[{"role":"user","content":"hi"}]}');
is($res->{status}, 400, "the provider's 400 goes on");
like($res->{body},
     qr/^\{"error":\{"message":"[^"]*aigw-mock fault status=400[^"]*","type":"invalid_request_error","param":null,"code":"invalid_request_error"\}\}$/,
     "as an OpenAI error, the provider's type as its code");

($res, $got) = provider_got('{"model":"broken","messages":'
    . '[{"role":"user","content":"hi"}]}');
is($res->{status}, 502, "the last candidate's 502 goes on as 502");
like($res->{body}, qr/^\{"error":\{"message":"[^"]*aigw-mock fault status=502\)","type":"server_error","param":null,"code":"api_error"\}\}$/,
     'as an OpenAI error');

# what exists in one format only: not an Anthropic candidate

($res, $got) = provider_got('{"model":"haiku","prompt":"hi"}',
                            '/v1/completions');
is($res->{status}, 400, 'a text completion to Anthropic only: 400');
like($res->{body}, qr/"code":"model_not_supported"/, 'not supported');

# an Anthropic client served by an OpenAI provider

my %anthropic = ('anthropic-version' => '2023-06-01');

sub provider_got_anthropic {
    my ($body) = @_;
    $ngx->request('POST', '/_mock/reset', {}, '');
    my $res = $ngx->request('POST', '/v1/messages', \%anthropic, $body);
    my $last = $ngx->request('GET', '/_mock/last', {}, undef);
    my $got = $last->{status} == 200
        ? JSON::PP->new->decode($last->{body}) : {};
    return ($res, $got);
}

($res, $got) = provider_got_anthropic('{"model":"gpt-4o","max_tokens":100,'
    . '"system":"Be brief.",'
    . '"messages":[{"role":"user","content":"hello there"}]}');

is($res->{status}, 200, 'a message served by OpenAI: 200');
is($got->{path}, '/v1/chat/completions', 'the provider is asked for a chat '
   . 'completion');
is($got->{body}, '{"model":"gpt-4o","max_tokens":100,"messages":['
   . '{"role":"system","content":"Be brief."},'
   . '{"role":"user","content":"hello there"}]}',
   'the chat completion request, byte for byte');

$a = eval { decode_json($res->{body}) } || {};
is($a->{type}, 'message', 'the answer is a message');
is($a->{role}, 'assistant', 'of the assistant');
is($a->{model}, 'gpt-4o', 'named as the client asked');
like($a->{id}, qr/^chatcmpl-/, "the provider's id");
is($a->{content}[0]{type}, 'text', 'a text block');
is($a->{content}[0]{text}, 'Mock answer to: hello there', 'its text');
is($a->{stop_reason}, 'end_turn', 'stop is end_turn');
is($a->{usage}{input_tokens}, 5, 'input tokens');
is($a->{usage}{output_tokens}, 7, 'output tokens');

($res, $got) = provider_got_anthropic('{"model":"gpt-4o","max_tokens":50,'
    . '"temperature":0.5,"top_p":0.9,"stop_sequences":["END"],'
    . '"metadata":{"user_id":"u-1"},'
    . '"system":[{"type":"text","text":"One","cache_control":{"type":"ephemeral"}},'
    . '{"type":"text","text":"Two \u00e9"}],'
    . '"tools":[{"name":"get_weather","description":"The weather",'
    . '"input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],'
    . '"tool_choice":{"type":"tool","name":"get_weather",'
    . '"disable_parallel_tool_use":true},'
    . '"messages":[{"role":"user","content":[{"type":"text","text":"a"},'
    . '{"type":"image","source":{"type":"base64","media_type":"image/png",'
    . '"data":"iVBO/w=="}},{"type":"image","source":{"type":"url",'
    . '"url":"https://x.test/a.png"}}]},'
    . '{"role":"assistant","content":[{"type":"thinking","thinking":"hmm",'
    . '"signature":"sig"},{"type":"text","text":"Let me look."},'
    . '{"type":"tool_use","id":"toolu_1","name":"get_weather",'
    . '"input":{"city":"Paris"}}]},'
    . '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1",'
    . '"content":"sunny"},{"type":"text","text":"thanks"}]}]}');

is($res->{status}, 200, 'every mapped field: 200');
is($got->{body}, '{"model":"gpt-4o","max_tokens":50,"temperature":0.5,'
   . '"top_p":0.9,"stop":["END"],"user":"u-1",'
   . '"tools":[{"type":"function","function":{"name":"get_weather",'
   . '"description":"The weather","parameters":{"type":"object",'
   . '"properties":{"city":{"type":"string"}}}}}],'
   . '"tool_choice":{"type":"function","function":{"name":"get_weather"}},'
   . '"parallel_tool_calls":false,'
   . '"messages":[{"role":"system","content":"One\nTwo \u00e9"},'
   . '{"role":"user","content":[{"type":"text","text":"a"},'
   . '{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO/w=="}},'
   . '{"type":"image_url","image_url":{"url":"https://x.test/a.png"}}]},'
   . '{"role":"assistant","content":"Let me look.","tool_calls":[{"id":"toolu_1",'
   . '"type":"function","function":{"name":"get_weather",'
   . '"arguments":"{\"city\":\"Paris\"}"}}]},'
   . '{"role":"tool","tool_call_id":"toolu_1","content":"sunny"},'
   . '{"role":"user","content":[{"type":"text","text":"thanks"}]}]}',
   'every mapped field, byte for byte');

for my $case (['"top_k":5', 'top_k'],
              ['"thinking":{"type":"enabled","budget_tokens":1024}', 'thinking'],
              ['"tools":[{"type":"web_search_20250305","name":"web_search"}]', 'tools'],
              ['"container":"x"', 'container'])
{
    my ($field, $name) = @$case;
    ($res, $got) = provider_got_anthropic('{"model":"gpt-4o","max_tokens":9,'
        . $field . ',"messages":[{"role":"user","content":"hi"}]}');
    is($res->{status}, 400, "anthropic client, $name: 400");
    like($res->{body},
         qr/^\{"type":"error","error":\{"type":"invalid_request_error","message":"'\Q$name\E' cannot be translated for `gpt-4o`, served in the openai format: .+?\."\}\}$/,
         "anthropic client, $name: named, in Anthropic's words");
    ok(!$got->{path}, "anthropic client, $name: no provider was asked");
}

($res, $got) = provider_got_anthropic('{"model":"gpt-4o","max_tokens":9,'
    . '"messages":[{"role":"user","content":[{"type":"document",'
    . '"source":{"type":"text","media_type":"text/plain","data":"x"}}]}]}');
is($res->{status}, 400, 'a document block: 400');

# an OpenAI error as Anthropic's

($res, $got) = provider_got_anthropic('{"model":"gpt-then-claude",'
    . '"max_tokens":9,"messages":[{"role":"user","content":"hello there"}]}');
is($res->{status}, 200, 'OpenAI 429, then Anthropic: 200');
is($got->{path}, '/v1/messages', 'the Anthropic provider answered');

($res, $got) = provider_got_anthropic('{"model":"gpt-busy","max_tokens":9,'
    . '"messages":[{"role":"user","content":"hi"}]}');
is($res->{status}, 429, "the OpenAI provider's 429 goes on");
like($res->{body},
     qr/^\{"type":"error","error":\{"type":"rate_limit_error","message":"[^"]*aigw-mock fault status=429[^"]*"\}\}$/,
     "as an Anthropic error");

# streams, translated event by event

($res, $got) = provider_got('{"model":"haiku","stream":true,'
    . '"stream_options":{"include_usage":true},'
    . '"messages":[{"role":"user","content":"hello there"}]}');
is($res->{status}, 200, 'a chat completion stream served by Anthropic');
like($got->{body}, qr/^\{"model":"claude-3-5-haiku","stream":true,"max_tokens":4096,/,
     'the provider is asked for a stream, without stream_options');
my @chunks = map { /^data: (.*)$/ ? $1 : () } split /\n\n/, $res->{body};
is($chunks[-1], '[DONE]', 'the stream ends with [DONE]');
my @objs = map { decode_json($_) } @chunks[0 .. $#chunks - 1];
is($objs[0]{choices}[0]{delta}{role}, 'assistant', 'the role first');
is(join('', map { $_->{choices}[0] ? $_->{choices}[0]{delta}{content} // '' : '' } @objs),
   'Mock answer to: hello there', 'the text, in pieces');
is((grep { $_->{choices}[0] && $_->{choices}[0]{finish_reason} } @objs)[0]
   {choices}[0]{finish_reason}, 'stop', 'the finish reason');
is($objs[-1]{usage}{completion_tokens}, 7, 'the usage chunk, asked for');
is(scalar(grep { $_->{object} ne 'chat.completion.chunk' } @objs), 0,
   'chunks only');
unlike($res->{body}, qr/event:|message_start|ping/, 'nothing of Anthropic\'s');

($res, $got) = provider_got_anthropic('{"model":"gpt-4o","max_tokens":100,'
    . '"stream":true,"messages":[{"role":"user","content":"hello there"}]}');
is($res->{status}, 200, 'a message stream served by OpenAI');
like($got->{body}, qr/"stream":true,"stream_options":\{"include_usage":true\}/,
     'the provider is asked for its usage');
my @events = map { [ /^event: (\S+)\ndata: (.*)$/s ] } split /\n\n/, $res->{body};
is_deeply([ map { $_->[0] } @events ],
          [ 'message_start', 'content_block_start',
            ('content_block_delta') x (scalar(@events) - 5),
            'content_block_stop', 'message_delta', 'message_stop' ],
          'the events of a message, in order');
is(join('', map { $_->[0] eq 'content_block_delta'
                  ? decode_json($_->[1])->{delta}{text} : '' } @events),
   'Mock answer to: hello there', 'the text, in pieces');
my $delta = decode_json($events[-2][1]);
is($delta->{delta}{stop_reason}, 'end_turn', 'the stop reason');
is($delta->{usage}{output_tokens}, 7, 'the usage');
is(decode_json($events[0][1])->{message}{model}, 'gpt-4o',
   'named as the client asked');

# an answer too large to hold cannot be translated: never the provider's

($res, $got) = provider_got('{"model":"haiku","messages":'
    . '[{"role":"user","content":"hello there"}]}',
    '/tiny/v1/chat/completions');
is($res->{status}, 502, 'a translated answer larger than the buffer: 502');
like($res->{body},
     qr/^\{"error":\{"message":"The answer of `haiku` is larger than aigw_answer_buffer: the gateway must read it whole to translate it\.","type":"server_error","param":null,"code":"answer_unreadable"\}\}$/,
     'in OpenAI\'s words, never in Anthropic\'s');
like($ngx->error_log, qr/is larger than aigw_answer_buffer, and must be translated whole/,
     'and the error log says so');

# tool calls in answers, both ways, JSON and streams

my $tools_openai = '"tools":[{"type":"function","function":{"name":"lookup",'
    . '"parameters":{"type":"object"}}}]';
my $tools_anthropic = '"tools":[{"name":"lookup","input_schema":{"type":"object"}}]';

$ngx->request('POST', '/_mock/reset', {}, '');
$res = $ngx->request('POST', '/v1/chat/completions', { 'x-mock' => 'tool' },
    '{"model":"haiku",' . $tools_openai
    . ',"messages":[{"role":"user","content":"where is bob"}]}');
$a = eval { decode_json($res->{body}) } || {};
my $call = $a->{choices}[0]{message}{tool_calls}[0] // {};
like($call->{id} // '', qr/^toolu_/, "Anthropic's tool_use as an OpenAI tool call");
is($call->{function}{name}, 'lookup', 'its name');
is($call->{function}{arguments}, '{"q":"where is bob"}', 'its input as the arguments string');
is($a->{choices}[0]{finish_reason}, 'tool_calls', 'tool_use is tool_calls');
is($a->{choices}[0]{message}{content}, undef, 'no text: content null');

$res = $ngx->request('POST', '/v1/chat/completions', { 'x-mock' => 'tool' },
    '{"model":"haiku","stream":true,' . $tools_openai
    . ',"messages":[{"role":"user","content":"where is bob"}]}');
my @tc = map { /^data: (\{.*\})$/ ? decode_json($1) : () } split /\n\n/, $res->{body};
my @deltas = map { $_->{choices}[0]{delta}{tool_calls} ? @{ $_->{choices}[0]{delta}{tool_calls} } : () } @tc;
is($deltas[0]{function}{name}, 'lookup', 'streamed: the call starts with its name');
like($deltas[0]{id}, qr/^toolu_/, 'and its id');
is(join('', map { $_->{function}{arguments} // '' } @deltas), '{"q":"where is bob"}',
   'streamed: the arguments in pieces');
is((grep { $_->{choices}[0]{finish_reason} } @tc)[0]{choices}[0]{finish_reason},
   'tool_calls', 'streamed: finish_reason tool_calls');
like($res->{body}, qr/data: \[DONE\]\n\n\z/, 'streamed: [DONE]');

$res = $ngx->request('POST', '/v1/messages',
    { 'x-mock' => 'tool', 'anthropic-version' => '2023-06-01' },
    '{"model":"gpt-4o","max_tokens":100,' . $tools_anthropic
    . ',"messages":[{"role":"user","content":"where is bob"}]}');
$a = eval { decode_json($res->{body}) } || {};
is($a->{content}[0]{type}, 'tool_use', "OpenAI's tool call as a tool_use block");
is($a->{content}[0]{name}, 'lookup', 'its name');
is_deeply($a->{content}[0]{input}, { q => 'where is bob' }, 'its arguments as the input object');
is($a->{stop_reason}, 'tool_use', 'tool_calls is tool_use');

$res = $ngx->request('POST', '/v1/messages',
    { 'x-mock' => 'tool', 'anthropic-version' => '2023-06-01' },
    '{"model":"gpt-4o","max_tokens":100,"stream":true,' . $tools_anthropic
    . ',"messages":[{"role":"user","content":"where is bob"}]}');
my @ev = map { [ /^event: (\S+)\ndata: (.*)$/s ] } split /\n\n/, $res->{body};
is_deeply([ map { $_->[0] } @ev ],
          [ 'message_start', 'content_block_start', 'content_block_delta',
            'content_block_delta', 'content_block_stop', 'message_delta',
            'message_stop' ], 'streamed: the events of a tool_use block');
my $start = decode_json($ev[1][1]);
is($start->{content_block}{type}, 'tool_use', 'streamed: a tool_use block');
is($start->{content_block}{name}, 'lookup', 'streamed: its name');
is(join('', map { $_->[0] eq 'content_block_delta'
                  ? decode_json($_->[1])->{delta}{partial_json} : '' } @ev),
   '{"q":"where is bob"}', 'streamed: the input in pieces');
is(decode_json($ev[5][1])->{delta}{stop_reason}, 'tool_use',
   'streamed: stop_reason tool_use');

# metering: the provider's usage, priced

open my $al, '<', "$dir/logs/access.log" or die;
my @log = grep { /^claude / } <$al>;
like($log[0], qr/^claude 5 7 0\.000040 200$/, 'metered from the message');

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

done_testing();
