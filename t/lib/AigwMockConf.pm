package AigwMockConf;

# http_config lines for the Test::Nginx suites whose providers are the
# mock with a fault each (t/022-hedge.t, t/023-resume.t,
# t/024-first-token.t), written once:
#
#   use AigwMockConf;
#   our $HttpConfig = outcome_log('pt=$aigw_prompt_tokens')
#       . mock_models({ key_env => 'AIGW_TEST_KEY' },
#             slow       => 'firstat=1,first=2500',
#             claudeslow => [ 'firstat=3,first=2500', 'anthropic' ])
#       . <<'_EOC_';
#       aigw_route slow-fast slow fast;
#   _EOC_
#
# mock_models: for each NAME => OPTIONS (or [ OPTIONS, FORMAT ]), a
# provider NAME at the mock's /fault/OPTIONS/v1 (OPTIONS '': its plain
# /v1) and a model NAME of it, upstream gpt-4o-mini (OpenAI) or
# claude-3-5-haiku (Anthropic), in the order given.  The mock's port is
# left as the $TEST_NGINX_MOCK_PORT placeholder, which the runner
# replaces, as the real Test::Nginx does.
#
# every_block($http_config, $config): each block of the file runs with
# these, unless it has its own (Test::Nginx's add_block_preprocessor,
# which both runners have), so that a block says what it asks and
# expects, not the file's configuration again.
#
# outcome_log: the "outcome" log_format of those suites, with FIELDS
# after its own (o=$aigw_outcome s=$status a=$aigw_attempts
# p=$aigw_provider).

use strict;
use warnings;

use Exporter ();

our @ISA    = qw(Exporter);
our @EXPORT = qw(mock_models outcome_log every_block);

my %upstream = (openai => 'gpt-4o-mini', anthropic => 'claude-3-5-haiku');

sub mock_models {
    my ($opt, @models) = @_;
    my $text = '';

    while (my ($name, $spec) = splice @models, 0, 2) {
        my ($fault, $format) = ref $spec ? @$spec : ($spec);
        $format //= 'openai';

        my $path = $fault eq '' ? '' : "/fault/$fault";
        my @params = ($format eq 'openai' ? () : "format=$format",
                      $opt->{key_env} ? "key_env=$opt->{key_env}" : ());

        $text .= "    aigw_provider $name "
               . "http://127.0.0.1:\$TEST_NGINX_MOCK_PORT$path/v1"
               . (@params ? "\n                  @params" : '') . ";\n"
               . "    aigw_model $name $name:"
               . ($upstream{$format} // die "no model of $format\n")
               . ";\n";
    }

    return $text;
}

sub every_block {
    my ($http, $config) = @_;

    Test::Nginx::Util::add_block_preprocessor(sub {
        my ($block) = @_;

        $block->set_value(http_config => $http)
            unless $block->can('http_config') && defined $block->http_config;
        $block->set_value(config => $config)
            unless $block->can('config') && defined $block->config;
    });
}

sub outcome_log {
    my ($fields) = @_;

    return "    log_format outcome 'o=\$aigw_outcome s=\$status "
         . "a=\$aigw_attempts '\n"
         . "                       'p=\$aigw_provider"
         . (defined $fields ? " $fields" : '') . "';\n";
}

1;
